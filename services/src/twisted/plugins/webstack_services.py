"""
twistd plugins for the webstack services: C{twistd -n webstack-<name>}, one
per service of L{webstack.registry}.

This file lives in C{twisted/plugins/} so that twistd finds it.  Twisted's
plugin system takes every module-level object that provides the plugin
interface, so each maker is bound to a module-level name (the service's);
the services' own modules are not imported until one is run.
"""

from webstack.registry import SERVICES
from webstack.runtime.plugin import WebServiceMaker

for _service in SERVICES:
    globals()[_service.name] = WebServiceMaker(
        _service.plugin, _service.module, _service.description
    )
del _service
