"""`wulian demo`: the platform plus a simulated city's devices, on a bare machine."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress

from wulian.cli._common import CliError, Globals, console, guarded, settings_for
from wulian.cli._provision import SECRETS_FILE, plan, plan_scenarios, provision
from wulian.cli.server import console_lines, run_service, stopped, token_lines
from wulian.config import Settings
from wulian.i18n import t
from wulian.netutil import pick_port
from wulian.rules.model import parse_rule
from wulian.scenarios import REGISTRY, Scenario
from wulian.sim import Fleet, FleetDevice

if TYPE_CHECKING:
    from wulian.service import Ready

log = logging.getLogger(__name__)
TICK_S = 5.0
DRAIN_S = 10.0
MIN_DEVICES = 1
DEFAULT_DEVICES = 120


class DemoRun:
    """What happens once the platform listens: provision, start the fleet, report."""

    def __init__(self, settings: Settings, devices: int | None, rate: float, bad_rate: float,
                 seconds: float, stop: threading.Event,
                 scenarios: tuple[Scenario, ...] = ()) -> None:
        self.settings = settings
        self.devices = devices
        self.scenarios = scenarios
        self.rate = rate
        self.bad_rate = bad_rate
        self.seconds = seconds
        self.stop = stop  # ends the service
        self.fleet_stop = threading.Event()
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def on_ready(self, ready: Ready) -> None:
        # Return at once: the service does not watch its stop event while this runs.
        self._thread = threading.Thread(target=self._main, args=(ready,), name="wulian-demo",
                                        daemon=True)
        self._thread.start()

    def _main(self, ready: Ready) -> None:
        try:
            fleet_devices = self._provision(ready)
            if self.fleet_stop.is_set():
                return
            self._panel(ready, fleet_devices)
            self._run_fleet(ready, fleet_devices)
        except Exception as exc:
            log.debug("demo failed", exc_info=True)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.stop.set()

    def _provision(self, ready: Ready) -> list[FleetDevice]:
        planned = (plan_scenarios(self.scenarios, self.devices) if self.scenarios
                   else plan(self.devices or DEFAULT_DEVICES))
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(t("cli.demo.provisioning", n=len(planned)), total=len(planned))
            fleet, created = provision(ready.core, self.settings.data_dir, planned,
                                       lambda n: bar.advance(task, n))
        console.print(t("cli.demo.provisioned", n=len(fleet), created=created,
                        reused=len(fleet) - created))
        self._load_rules(ready, fleet)
        return fleet

    def _load_rules(self, ready: Ready, fleet: list[FleetDevice]) -> None:
        """Default rules for the products on show, unless a rule of that id is already kept.

        With scenarios chosen, theirs; without, every scenario rule about the plain demo's
        products (the streetlight's and the smart meter's come from two scenarios).
        """
        store = ready.core.rule_store
        have = {s.rule.id for s in store.list_rules()}
        products = {d.product.id for d in fleet}
        added = 0
        for scenario in self.scenarios or REGISTRY.values():
            for doc in scenario.default_rules:
                rule = parse_rule(doc)
                if rule.id in have or not set(rule.scope.products) <= products:
                    continue
                store.put_rule(rule, create_only=True)
                have.add(rule.id)
                added += 1
        if added:
            ready.core.rules.reload()
        console.print(t("cli.demo.rules", added=added, total=len(have)))

    def _panel(self, ready: Ready, fleet: list[FleetDevice]) -> None:
        s = self.settings
        token_file = escape(str(s.secret_file("admin.token").resolve()))
        bearer = "$WULIAN_ADMIN_TOKEN" if s.admin_token else f"$(cat {token_file})"
        example = fleet[0].id
        props = fleet[0].product.model.properties
        example_property = next((f.id for f in props if f.type in ("int", "float")), props[0].id)
        data_dir = escape(str(s.data_dir))
        lines = [
            f"{t('cli.ready.api')}: {ready.http_url}/api/v1",
            f"{t('cli.ready.docs')}: {ready.http_url}/docs",
            f"{t('cli.ready.mqtt')}: mqtt://{ready.mqtt_host}:{ready.mqtt_port}",
            f"{t('cli.ready.data')}: {escape(str(s.data_dir.resolve()))}",
            *console_lines(ready, s),
            *token_lines(ready, s),
            t("cli.demo.fleet", n=len(fleet), rate=self.rate, bad=f"{self.bad_rate:.0%}"),
            t("cli.demo.secrets", path=escape(str((s.data_dir / SECRETS_FILE).resolve()))),
            "",
            t("cli.demo.try_curl"),
            f'  curl -s -H "Authorization: Bearer {bearer}" '
            f"{ready.http_url}/api/v1/devices/{example}/latest",
            t("cli.demo.try_query"),
            f"  wulian --data-dir {data_dir} query {example} {example_property} --since 10m",
            f"  wulian --data-dir {data_dir} rejections --limit 10",
            "",
            t("cli.demo.stop_hint") if not self.seconds else
            t("cli.demo.stops_after", seconds=f"{self.seconds:g}"),
        ]
        console.print(Panel("\n".join(lines), title=t("cli.demo.title"), expand=False))

    def _run_fleet(self, ready: Ready, devices: list[FleetDevice]) -> None:
        fleet = Fleet(devices, ready.mqtt_host, ready.mqtt_port, rate_hz_per_device=self.rate,
                      bad_rate=self.bad_rate)
        runner = threading.Thread(target=fleet.run, kwargs={"stop": self.fleet_stop},
                                  name="wulian-demo-fleet", daemon=True)
        runner.start()
        started = last = time.monotonic()
        store = ready.core.store
        before = _handled(store.counters())
        while not self.fleet_stop.is_set():
            ends = started + self.seconds if self.seconds else None
            wait = TICK_S if ends is None else min(TICK_S, max(0.0, ends - time.monotonic()))
            if self.fleet_stop.wait(wait) or self.stop.is_set():
                break
            now = time.monotonic()
            counters = store.counters()
            handled = _handled(counters)
            self._tick(counters, fleet, (handled - before) / max(now - last, 1e-3))
            before, last = handled, now
            if ends is not None and now >= ends:
                break
        self.fleet_stop.set()
        runner.join(30)
        stats = fleet.stats()
        # The last readings may still be in the consumer's current batch: let them land
        # (bounded) so the totals printed are the final ones.
        deadline = time.monotonic() + DRAIN_S
        counters = store.counters()
        while _handled(counters) < stats.acked and time.monotonic() < deadline:
            time.sleep(0.1)
            counters = store.counters()
        alarms = ready.core.rule_store.counts()["open"]
        console.print(t("cli.demo.alarms", open=sum(alarms.values()),
                        critical=alarms["critical"], major=alarms["major"]))
        console.print(t("cli.demo.summary", sent=stats.sent + stats.events_sent,
                        acked=stats.acked,
                        errors=stats.errors_received,
                        accepted=counters.get("messages_accepted", 0),
                        rejected=counters.get("messages_rejected", 0),
                        points=counters.get("points_stored", 0)))

    def _tick(self, counters: dict[str, int], fleet: Fleet, rate: float) -> None:
        stats = fleet.stats()
        console.print(t("cli.demo.tick", time=time.strftime("%H:%M:%S"),
                        accepted=counters.get("messages_accepted", 0),
                        rejected=counters.get("messages_rejected", 0),
                        points=counters.get("points_stored", 0),
                        online=stats.connected, devices=stats.devices, rate=f"{rate:.0f}"))

    def finish(self) -> None:
        """Stop the fleet (the service has stopped or is stopping) and wait for the reporter."""
        self.fleet_stop.set()
        if self._thread is not None:
            self._thread.join(60)


def _handled(counters: dict[str, int]) -> int:
    return counters.get("messages_accepted", 0) + counters.get("messages_rejected", 0)


def _chosen(name: str | None) -> tuple[Scenario, ...]:
    if name is None:
        return ()
    if name == "all":
        return tuple(REGISTRY.values())
    if name not in REGISTRY:
        raise CliError(t("cli.scenario.not_found", name=name, names=", ".join(REGISTRY)), 2)
    return (REGISTRY[name],)


def demo(ctx: typer.Context,
         devices: Annotated[int | None, typer.Option(
             min=MIN_DEVICES, show_default=False, help=t("cli.demo.devices"))] = None,
         scenario: Annotated[str | None, typer.Option(
             metavar="NAME|all", show_default=False, help=t("cli.demo.scenario"))] = None,
         seconds: Annotated[float, typer.Option(min=0, help=t("cli.demo.seconds"))] = 0,
         rate: Annotated[float, typer.Option(min=0.01, max=100, help=t("cli.demo.rate"))] = 1.0,
         bad_rate: Annotated[float, typer.Option(min=0, max=1,
                                                 help=t("cli.demo.bad_rate"))] = 0.02,
         data_dir: Annotated[Path | None, typer.Option(
             help=t("cli.demo.data_dir"), show_default=False)] = None,
         http_port: Annotated[int, typer.Option(help=t("cli.serve.http_port"))] = 8080,
         mqtt_port: Annotated[int, typer.Option(help=t("cli.serve.mqtt_port"))] = 1883) -> None:
    chosen = _chosen(scenario)
    g = ctx.find_root().obj
    g = g if isinstance(g, Globals) else Globals()
    directory = data_dir or g.data_dir or Path("wulian-demo")
    # The demo keeps to its data dir: no database or broker from the environment.
    settings = settings_for(ctx, directory, g.database, broker="embedded")
    settings.database = g.database
    host = settings.http_host
    settings.http_port = pick_port(http_port, host)
    settings.mqtt_port = pick_port(mqtt_port, settings.mqtt_host, avoid={settings.http_port})
    for what, wanted, got in (("HTTP", http_port, settings.http_port),
                              ("MQTT", mqtt_port, settings.mqtt_port)):
        if wanted and wanted != got:
            console.print(t("cli.demo.port_changed", what=what, wanted=wanted, got=got))
    console.print(t("cli.demo.starting", path=escape(str(directory.resolve()))))
    stop = threading.Event()
    run = DemoRun(settings, devices, rate, bad_rate, seconds, stop, chosen)
    try:
        summary = run_service(settings, run.on_ready, stop)
    finally:
        run.finish()
    if run.error:
        raise CliError(t("cli.demo.failed", detail=run.error))
    console.print(stopped(summary))


def register(app: typer.Typer) -> None:
    app.command("demo", help=t("cli.demo.help"))(guarded(demo))
