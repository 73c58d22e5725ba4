# -*- test-case-name: tests.test_config,tests.test_front_integration -*-
"""
Turning a service module into a twistd plugin (C{twistd -n webstack-async}).

A service's C{app} module (L{webstack.registry.Service.module}) provides:

  - C{SECTION}: its table in C{stack.toml} (C{"async"}, C{"front"}, ...);
  - C{Settings}: a frozen dataclass of its own settings (see
    L{webstack.runtime.config.setting});
  - C{makeApp(context: AppContext) -> App}: its resources and helpers;
  - optionally C{SUBTABLES}, the names of its table's sub-tables, and
    C{loadSettings(document, environ, source) -> Settings} to read them (the
    front's routes).

The first two (and the last two) come from the package's C{settings} module,
which imports nothing of the app, so a tool reads the settings without it
(C{webstack.auth.users}).

The runtime does everything else the same way for every service: settings and
their errors (L{webstack.runtime.settings}), the site and its limits, health,
metrics, logging, draining, and the operators' endpoints (C{/healthz},
C{/readyz}, C{/metrics}: L{webstack.runtime.ops}).  The plugin file imports
only this module, and the service module is imported by name when the
service is made, so C{twistd --help} stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.python.reflect import namedAny
from twisted.web.resource import Resource
from zope.interface import implementer

from .config import ConfigError, configPath, readConfig
from .faults import FaultSwitch, adminServices, checkAdminListen
from .health import Health
from .metrics import HTTPMetrics
from .ops import mountOps, opsResources
from .service import WebService, listeningEndpoint
from .settings import RuntimeSettings, fieldNames, ownSettings, runtimeSettings
from .site import RouteLabeler, WebSite
from .workers import (
    WorkerCommand,
    WorkerParent,
    workerCount,
    workerRequestFactory,
    workerWrapper,
)


@dataclass
class AppContext:
    """
    What a service's C{makeApp} is given.

    @ivar health: its readiness, to which it may add checks.
    @ivar metricsDir: the directory of the workers' shared metrics, if the
        service runs as several workers (L{webstack.runtime.workers}).
    """

    reactor: Any
    runtime: RuntimeSettings
    settings: Any
    registry: CollectorRegistry
    health: Health
    configDir: FilePath = field(default_factory=lambda: FilePath("config"))
    metricsDir: str | None = None

    def configPath(self, relative: str) -> FilePath:
        """
        A path from the settings: relative ones are taken from the directory
        of C{stack.toml}, so C{root = "static"} is C{config/static} both on
        a checkout and at C{/app/config} in a container.
        """
        if relative.startswith("/"):
            return FilePath(relative)
        return self.configDir.preauthChild(relative)


@dataclass
class App:
    """
    What a service's C{makeApp} returns.

    @ivar resource: the root of its resource tree.  The runtime adds the
        operators' endpoints to it, at C{opsPath}.
    @ivar routes: the path prefixes its metrics are labelled by (the
        runtime adds the operators' endpoints).
    @ivar opsPath: where the runtime puts C{healthz}, C{readyz} and
        C{metrics} in the tree (L{webstack.runtime.ops.mountOps}).
    @ivar children: services started and stopped with it (timers, pools).
    @ivar drainHooks: called in order when the drain begins, before any
        request is waited for (a child whose stop shares the drain's
        deadline notes the time).
    @ivar stopHooks: called in order after the drain; each may return a
        Deferred.
    @ivar configureSite: called with the L{WebSite} once it is made, for a
        service that needs its own session factory or request class.
    @ivar parseForms: whether a urlencoded or multipart POST body is parsed
        into C{request.args} (Twisted's default); off unless a resource of
        the service reads form fields.
    """

    resource: Resource
    routes: Sequence[str]
    opsPath: str = "/"
    children: Sequence[IService] = ()
    drainHooks: Sequence[Callable[[], Any]] = ()
    stopHooks: Sequence[Callable[[], Any]] = field(default_factory=list)
    configureSite: Callable[[WebSite], None] | None = None
    parseForms: bool = False


def loadServiceSettings(
    module, document: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> tuple[RuntimeSettings, Any]:
    """
    Read a service's runtime settings and its own settings from C{document}.

    @raise ConfigError: naming the first bad key.
    """
    section = module.SECTION
    subtables = frozenset(getattr(module, "SUBTABLES", ()))
    runtime = runtimeSettings(
        document, section, environ, source, otherKeys=fieldNames(module.Settings) | subtables
    )
    loader = getattr(module, "loadSettings", None)
    if loader is not None:
        settings = loader(document, environ, source)
    else:
        settings = ownSettings(
            module.Settings, document, section, environ, source, subtables=subtables
        )
    return runtime, settings


def buildService(
    module,
    runtime: RuntimeSettings,
    settings: Any,
    reactor,
    configDir: FilePath | None = None,
    *,
    endpoint=None,
    metricsDir: str | None = None,
    workerId: bytes | None = None,
) -> WebService:
    """
    Assemble the running service: app, site, endpoint, drain.

    A worker (L{webstack.runtime.workers}) passes the three keywords: the
    socket it adopts instead of listening, the directory of the workers'
    shared metrics, and its C{X-Worker} value.
    """
    registry = CollectorRegistry(auto_describe=True)
    health = Health()
    context = AppContext(
        reactor=reactor,
        runtime=runtime,
        settings=settings,
        registry=registry,
        health=health,
        configDir=configDir or FilePath("config"),
        metricsDir=metricsDir,
    )
    app = module.makeApp(context)
    opsRoutes = mountOps(
        app.resource, app.opsPath, opsResources(health, registry, metricsDir)
    )
    site = WebSite(
        app.resource,
        reactor=reactor,
        metrics=HTTPMetrics(registry),
        routeLabeler=RouteLabeler([*app.routes, *opsRoutes]),
        idleTimeout=runtime.idle_timeout,
        headTimeout=runtime.head_timeout,
        bodyTimeout=runtime.body_timeout,
        maxHeaderBytes=runtime.max_header_bytes,
        maxHeaders=runtime.max_headers,
        maxBodyBytes=runtime.max_body_bytes,
        writeTimeout=runtime.write_timeout,
        maxConnections=runtime.max_connections,
        parseForms=app.parseForms,
        gcThreshold=runtime.gc_threshold,
    )
    if app.configureSite is not None:
        app.configureSite(site)
    if workerId is not None:
        site.requestFactory = workerRequestFactory(site.requestFactory, workerId)
    # Last: it may put its wrapper in front of the site's root at run time.
    faults = FaultSwitch(
        site, reactor=reactor, registry=registry, name=f"webstack-{module.SECTION}"
    )
    if endpoint is None:
        endpoint = listeningEndpoint(reactor, runtime.listen, runtime.backlog)
    return WebService(
        name=f"webstack-{module.SECTION}",
        reactor=reactor,
        endpoint=endpoint,
        site=site,
        health=health,
        drainTimeout=runtime.drain_timeout,
        children=[
            *app.children,
            *adminServices(reactor, runtime.admin_listen, faults, workerId),
        ],
        drainHooks=app.drainHooks,
        stopHooks=app.stopHooks,
        handleSigterm=True,
    )


class ServiceOptions(usage.Options):
    """
    Options of every C{webstack-*} plugin.  Settings are read and checked
    here, so a bad value stops twistd before anything starts, with one line
    on standard error and exit status 2.
    """

    optParameters = [
        [
            "config",
            "c",
            None,
            "The stack's TOML file (default: $WEBSTACK_CONFIG, else"
            " config/stack.toml).",
        ],
    ]

    def __init__(self, moduleName: str, tapname: str) -> None:
        super().__init__()
        self.moduleName = moduleName
        self.tapname = tapname

    def postOptions(self) -> None:
        environ = os.environ
        path = self["config"] or configPath(environ)
        try:
            module = namedAny(self.moduleName)
            document = readConfig(path)
            self.runtime, self.settings = loadServiceSettings(
                module, document, environ, path
            )
            self.module = module
            self.configFile = os.path.abspath(path)
            self.configDir = FilePath(self.configFile).parent()
            # Check the listen description now too, not at start-up.
            from twisted.internet import reactor

            listeningEndpoint(reactor, self.runtime.listen, self.runtime.backlog)
            self.workers = workerCount(self.runtime.workers)
            kind = self.runtime.listen.split(":", 1)[0]
            if self.workers > 1 and kind not in ("tcp", "tcp6"):
                raise ConfigError(
                    f"{module.SECTION}.workers = {self.runtime.workers} needs a tcp"
                    f" listen description, not {self.runtime.listen!r}"
                    " (or set workers = 1)"
                )
            checkAdminListen(reactor, self.runtime.admin_listen, self.workers)
        except ConfigError as e:
            sys.stderr.write(f"{self.tapname}: {e}\n")
            sys.stderr.flush()
            raise SystemExit(2)


def _loggerName(twistdOptions) -> str | None:
    """
    The dotted name of twistd's C{--logger}, for the workers to log alike
    (twistd's options hold the factory itself by then).
    """
    factory = twistdOptions.get("logger") if twistdOptions is not None else None
    if factory is None:
        return None
    if isinstance(factory, str):
        return factory
    return f"{factory.__module__}.{factory.__qualname__}"


@implementer(IServiceMaker, IPlugin)
class WebServiceMaker:
    """
    The twistd plugin of one service, importing its module only when used.
    """

    def __init__(self, tapname: str, moduleName: str, description: str) -> None:
        self.tapname = tapname
        self.moduleName = moduleName
        self.description = description

    def options(self) -> ServiceOptions:
        return ServiceOptions(self.moduleName, self.tapname)

    def makeService(self, options: ServiceOptions) -> IService:
        """
        The service itself, or, with C{workers} above 1, the parent of that
        many processes that each run it (L{WorkerParent}).
        """
        from twisted.internet import reactor

        if options.workers > 1:
            parent = getattr(options, "parent", None)
            return WorkerParent(
                name=f"webstack-{options.module.SECTION}",
                reactor=reactor,
                endpoint=listeningEndpoint(
                    reactor, options.runtime.listen, options.runtime.backlog
                ),
                count=options.workers,
                command=WorkerCommand(
                    moduleName=self.moduleName,
                    tapname=self.tapname,
                    configFile=options.configFile,
                    logger=_loggerName(parent),
                    environ=dict(os.environ),
                    reactor=parent.get("reactor") if parent is not None else None,
                    wrapper=workerWrapper(os.environ),
                ),
                drainTimeout=options.runtime.drain_timeout,
                handleSigterm=True,
            )
        return buildService(
            options.module, options.runtime, options.settings, reactor, options.configDir
        )
