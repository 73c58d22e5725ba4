# Seed 001, "asynchronous responses", as the seed runs it: an .rpy script.
# Modern Python 3: the body is bytes.  The module version, with the client's
# departure handled, is services/src/webstack/async_/delay.py.
# No cache(): the script keeps no state between requests.
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


class DelayedResource(Resource):
    def _delayedRender(self, request):
        request.write(b"<html><body>Sorry to keep you waiting.</body></html>")
        request.finish()

    def render_GET(self, request):
        reactor.callLater(5, self._delayedRender, request)
        return NOT_DONE_YET


resource = DelayedResource()
