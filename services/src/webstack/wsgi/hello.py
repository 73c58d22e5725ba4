"""
Seed 004, "WSGI": the seed's application, as it is (bytes for Python 3).

Served at C{/wsgi/hello} by L{WSGIResource} on the service's own thread pool
(see L{webstack.wsgi.app}); run alone with C{twistd -n web --wsgi
webstack.wsgi.hello.application}, as the seed shows.
"""


def application(environ, start_response):
    start_response("200 OK", [("Content-type", "text/plain")])
    return [b"Hello, world!"]
