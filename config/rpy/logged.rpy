# Seed 002, "logging errors": the interrupted response, logged.  The seed's
# twisted.python.log.err still works (it reaches the service's JSON log);
# twisted.logger's Logger.failure is its modern form, used by the module
# version: services/src/webstack/async_/logged.py.
from twisted.internet import reactor
from twisted.python.log import err
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET


class DelayedResource(Resource):
    def _delayedRender(self, request):
        request.write(b"Sorry to keep you waiting.")
        request.finish()

    def _responseFailed(self, failure, call):
        call.cancel()
        err(failure, "Async response demo interrupted response")

    def render_GET(self, request):
        call = reactor.callLater(5, self._delayedRender, request)
        request.notifyFinish().addErrback(self._responseFailed, call)
        return NOT_DONE_YET


resource = DelayedResource()
