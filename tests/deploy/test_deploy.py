"""deploy/: every artefact checked by the tool made for it, and against the code it deploys.

- The image (deploy/Dockerfile): no container engine runs here, so the test does what the
  image does: it builds the wheel from the files the builder stage copies, installs it in a
  clean virtualenv, runs the image's ENTRYPOINT + CMD from there with the image's paths mapped
  onto temporary ones (a config derived from deploy/gateway.toml, pointed at the simulator),
  runs the HEALTHCHECK command, sends a message through the API to "delivered", and stops the
  daemon with the STOPSIGNAL.
- The systemd unit: ``systemd-analyze verify`` and ``systemd-analyze security --offline``.
- The Kubernetes manifests: in test_kubernetes.py.
- Prometheus: ``promtool check config``, ``check rules`` and ``test rules``.
- The Grafana dashboard and the alerts: every metric they name is one the gateway exports.

A missing tool (systemd-analyze, promtool) fails its test with the package to install; .ci/run
installs them.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.channel import Backoff, PoolTuning
from gateway.config import parse_config, split_host_port
from gateway.daemon import Gateway, GatewayOptions
from gateway.ops import Metrics
from gateway.ops.counters import GaugeFamily
from gateway.sim import Account, Simulator, SimulatorConfig
from gateway.store import NewMessage
from tests.aio import eventually, run

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
CONTAINER_CONFIG = DEPLOY / "gateway.toml"
UNIT = DEPLOY / "systemd" / "cmpp-gateway.service"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"

IMAGE_CONFIG = "/etc/cmpp-gateway/gateway.toml"
IMAGE_STATE = "/var/lib/cmpp-gateway"
IMAGE_VENV = "/opt/cmpp-gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def container_config() -> dict:
    return tomllib.loads(CONTAINER_CONFIG.read_text(encoding="utf-8"))


def secret_variables(config: dict) -> set[str]:
    """Every environment variable a configuration reads secrets from."""
    return {table[key] for kind in ("channels", "apps") for table in config.get(kind, {}).values()
            for key in ("password_env", "master_secret_env") if key in table}


def require(tool: str, package: str) -> str:
    """The tool's path; fails (never skips) naming the Debian package that provides it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install -y --no-install-recommends "
                    f"{package} (.ci/run installs it)")
    return path


# ============================================================================= Dockerfile

@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array form as a list; the shell form as ``/bin/sh -c``."""
        if self.args.lstrip().startswith("["):
            return json.loads(self.args)
        return ["/bin/sh", "-c", self.args]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments and parser directives
    dropped, ARG defaults substituted in FROM."""
    logical: list[tuple[int, str]] = []
    current, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        logical.append((start, current.strip()))
        current = ""
    assert not current, "the Dockerfile ends with a line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)],
                           rest).split()
            words = [w for w in words if not w.startswith("--")]
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"line {number}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, rest, number))
    return stages


def split_options(args: str) -> tuple[dict[str, str], str]:
    """``--interval=30s --timeout=5s CMD [...]`` -> ({"interval": "30s", ...}, "CMD [...]")."""
    options = {}
    while args.startswith("--"):
        option, _, args = args.partition(" ")
        name, _, value = option[2:].partition("=")
        options[name] = value
        args = args.lstrip()
    return options, args


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


@dataclass
class Image:
    """What the final stage of deploy/Dockerfile says the container is."""

    builder: Stage
    final: Stage
    entrypoint: list[str]
    cmd: list[str]
    healthcheck_options: dict[str, str]
    healthcheck: list[str]
    exposed: list[int]
    volumes: list[str]
    user: str
    workdir: str
    env: dict[str, str]
    stopsignal: str


def read_image() -> Image:
    stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2, "a multi-stage build: a builder stage and the final image"
    final = stages[-1]
    builder = next(s for s in stages if s.name and any(      # COPY --from= or RUN --mount
        re.search(rf"\bfrom={re.escape(s.name)}\b", i.args) for i in final.instructions))
    options, check = split_options(final.last("HEALTHCHECK").args)
    assert check.startswith("CMD "), f"HEALTHCHECK {check}"
    volumes = []
    for instruction in final.all("VOLUME"):
        args = instruction.args
        volumes += json.loads(args) if args.startswith("[") else args.split()
    env = {}
    for instruction in final.all("ENV"):
        for item in shlex.split(instruction.args):
            name, _, value = item.partition("=")
            env[name] = value
    return Image(builder, final, final.last("ENTRYPOINT").exec_form(),
                 final.last("CMD").exec_form(),
                 options, Instruction("CMD", check[4:], 0).exec_form(),
                 [int(p.split("/")[0]) for i in final.all("EXPOSE") for p in i.args.split()],
                 volumes, final.last("USER").args, final.last("WORKDIR").args, env,
                 final.last("STOPSIGNAL").args)


def test_the_dockerfile_parser_reads_forms_continuations_and_options():
    stages = parse_dockerfile('# syntax=docker/dockerfile:1\nARG BASE=python:3.11-slim\n'
                              'FROM ${BASE} AS b\nRUN a \\\n  # a comment\n  && b\n'
                              'FROM $BASE\nHEALTHCHECK --interval=30s --timeout=5s \\\n'
                              '  CMD ["python", "-c", "x"]\nCMD run --config x\n')
    assert [(s.base, s.name) for s in stages] == [("python:3.11-slim", "b"),
                                                  ("python:3.11-slim", None)]
    assert stages[0].last("RUN").args == "a && b"
    options, rest = split_options(stages[1].last("HEALTHCHECK").args)
    assert options == {"interval": "30s", "timeout": "5s"}
    assert rest == 'CMD ["python", "-c", "x"]'
    assert stages[1].last("CMD").exec_form() == ["/bin/sh", "-c", "run --config x"]
    assert seconds("1m30s") == 90


def test_the_image_is_small_non_root_and_agrees_with_its_configuration():
    image, config = read_image(), container_config()
    assert image.builder.base == image.final.base == "python:3.11-slim"
    assert any("pip wheel" in i.args for i in image.builder.all("RUN"))
    # Only the wheels reach the final stage: no COPY of the sources, wheels from the builder.
    assert not image.final.all("COPY") and not image.final.all("ADD")
    installs = [i.args for i in image.final.all("RUN") if "pip" in i.args]
    assert installs and all(f"from={image.builder.name}" in i and "--no-index" in i
                            for i in installs)
    uid = image.user.split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, "USER is numeric (runAsNonRoot can check it)"
    assert image.entrypoint == ["cmpp-gateway"]
    assert image.cmd == ["run", "--config", IMAGE_CONFIG]
    assert image.stopsignal == "SIGTERM"
    store = config["gateway"]["store"]
    assert image.volumes == [IMAGE_STATE] and Path(store).parent == Path(IMAGE_STATE)
    listen = [split_host_port(config["gateway"][key]) for key in ("api_listen", "metrics_listen")]
    assert all(host == "0.0.0.0" for host, _ in listen)
    assert sorted(image.exposed) == sorted(port for _, port in listen) == [8080, 9108]
    metrics_port = split_host_port(config["gateway"]["metrics_listen"])[1]
    assert image.healthcheck[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{metrics_port}/healthz" in image.healthcheck[2]
    assert "urllib" in image.healthcheck[2]
    assert not any(tool in " ".join(image.healthcheck) for tool in ("curl", "wget"))
    assert seconds(image.healthcheck_options["timeout"]) < seconds(
        image.healthcheck_options["interval"])
    assert image.env["PATH"].startswith(f"{IMAGE_VENV}/bin:")
    assert image.workdir == IMAGE_STATE
    # No secret in the image's configuration: all of them come from the environment.
    assert not any(key in table for kind in ("channels", "apps")
                   for table in config[kind].values() for key in ("password", "master_secret"))


# ----------------------------------------------------------------------------- the wheel

def run_steps(stage: Stage) -> list[list[str]]:
    """The commands of a stage's RUN instructions (their --mount options dropped), one per
    ``&&``-joined step."""
    steps = []
    for instruction in stage.all("RUN"):
        _, command = split_options(instruction.args)
        steps += [shlex.split(step) for step in command.split("&&")]
    return steps


def local_command(step: list[str], paths: dict[str, Path]) -> list[str]:
    """A step of the image's build run here: its ``python``/``pip`` this interpreter's, the
    image's paths mapped onto local ones, globs expanded."""
    argv = []
    for arg in step:
        for image_path, path in paths.items():
            arg = arg.replace(image_path, str(path))
        argv += sorted(glob.glob(arg)) or [arg] if "*" in arg else [arg]
    head = {"python": [sys.executable], "pip": [sys.executable, "-m", "pip"]}[argv[0]]
    return head + argv[1:]


def run_local(argv: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{argv}\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def image_build(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheels, the installed virtualenv), made by the image's own build commands: the
    files the builder stage COPYs (links kept, as COPY keeps them), its ``pip wheel``, and the
    final stage's ``python -m venv`` and ``pip install`` from the wheels only. The final
    stage's other steps (the system user, its directories) need root and are not run."""
    image = read_image()
    context = tmp_path_factory.mktemp("build-context")
    workdir = Path(image.builder.last("WORKDIR").args)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for instruction in image.builder.all("COPY"):
        *sources, dest = instruction.args.split()
        target = context / (workdir / dest).relative_to(workdir)
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, target, symlinks=True, ignore=ignore, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
    wheels = tmp_path_factory.mktemp("wheels")
    venv = tmp_path_factory.mktemp("opt") / "cmpp-gateway"
    paths = {"/wheels": wheels, IMAGE_VENV: venv}
    [build] = [step for step in run_steps(image.builder) if step[:2] == ["pip", "wheel"]]
    run_local(local_command(build, paths) + ["-q"], cwd=context)
    installs = [step for step in run_steps(image.final) if step[0] in ("python", "pip")]
    assert [step[:3] for step in installs] == [["python", "-m", "venv"],
                                               ["pip", "--disable-pip-version-check",
                                                "--no-cache-dir"]]
    for step in installs:
        run_local(local_command(step, paths))
    return wheels, venv


@pytest.fixture(scope="module")
def wheel(image_build) -> Path:
    [built] = image_build[0].glob("cmpp_gateway-*.whl")
    return built


@pytest.fixture(scope="module")
def clean_venv(image_build) -> Path:
    """A virtualenv holding only the gateway's wheel and its dependencies (no pip even)."""
    return image_build[1]


def test_the_wheel_ships_the_receipt_code_tables(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tables = sorted(p.name for p in (ROOT / "fixtures" / "providers").glob("*.toml"))
    assert "default.toml" in tables
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("gateway/providers/"))
    assert shipped == tables
    assert "gateway/daemon.py" in names and "cmpp/__init__.py" in names
    assert not any(n.startswith(("tests/", "fixtures/")) for n in names)


def test_the_wheel_ships_the_consoles_templates_and_assets(wheel):
    """The console serves everything from its package (private clouds are offline)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    console = ROOT / "gateway" / "console"
    files = [p for kind in ("templates", "static") for p in (console / kind).iterdir()]
    assert len(files) >= 15
    missing = [str(p.relative_to(ROOT)) for p in files
               if str(p.relative_to(ROOT)) not in names]
    assert missing == []


# ----------------------------------------------------------------------------- running it

def toml_text(document: dict) -> str:
    """A TOML document for the configuration's value types (strings, numbers, booleans, lists
    of strings, tables of tables)."""
    def key(name: str) -> str:
        return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        return "[" + ", ".join(value(x) for x in v) + "]"

    lines: list[str] = []

    def table(path: list[str], content: dict) -> None:
        scalars = {k: v for k, v in content.items() if not isinstance(v, dict)}
        if path and (scalars or not content):
            lines.append(f"[{'.'.join(key(p) for p in path)}]")
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in content.items():
            if isinstance(v, dict):
                table([*path, k], v)
    table([], document)
    return "\n".join(lines) + "\n"


class CallbackReceiver:
    """The apps' callback endpoint (JSMS's format, the default): answers the URLs' echostr
    check, then 200 to each POST, and keeps each POST."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict, bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind}", self.handle)
        app.router.add_get("/{kind}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def echo(self, request: web.Request) -> web.Response:
        return web.Response(text=request.query["echostr"])

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.match_info["kind"], dict(request.headers),
                              await request.read()))
        return web.Response(text="ok")

    async def stop(self) -> None:
        await self.runner.cleanup()


async def http_status(http: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return None


def test_the_image_entry_command_runs_from_a_clean_install_and_stops_on_its_stopsignal(
        clean_venv, tmp_path):
    image, original = read_image(), container_config()
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    paths = {IMAGE_VENV: str(clean_venv), str(Path(IMAGE_CONFIG).parent): str(etc),
             IMAGE_STATE: str(state)}

    def local(text: str) -> str:
        for image_path, path in paths.items():
            text = text.replace(image_path, path)
        return text

    ports = {split_host_port(original["gateway"][k])[1]: free_port()
             for k in ("api_listen", "metrics_listen")}
    api_port = ports[split_host_port(original["gateway"]["api_listen"])[1]]
    metrics_port = ports[split_host_port(original["gateway"]["metrics_listen"])[1]]
    secrets = {name: f"test-{name.lower()}-Zq7" for name in secret_variables(original)}

    async def scenario():
        accounts = [Account(c["account"], secrets[c["password_env"]])
                    for c in original["channels"].values()]
        receiver = CallbackReceiver()
        await receiver.start()
        try:
            async with Simulator(SimulatorConfig(accounts=accounts, report_delay=0.05)) as sim:
                await run_image(sim, receiver)
        finally:
            await receiver.stop()

    async def run_image(sim, receiver):
        config = json.loads(json.dumps(original))
        gw = config["gateway"]
        gw["store"] = local(gw["store"])
        gw["api_listen"] = f"127.0.0.1:{api_port}"
        gw["metrics_listen"] = f"127.0.0.1:{metrics_port}"
        for channel in config["channels"].values():
            channel["host"], channel["port"] = "127.0.0.1", sim.address[1]
        for app in config["apps"].values():
            for kind in ("status_callback", "mo_callback"):
                if app.get(kind):
                    app[kind] = f"{receiver.url}/{kind}"
        config_path = Path(local(IMAGE_CONFIG))
        config_path.write_text(toml_text(config), encoding="utf-8")
        config_path.chmod(0o640)            # as installed (the daemon warns otherwise)

        env = {name: local(value).replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
               for name, value in image.env.items()}
        env.update(secrets, HOME=str(state), LANG="C.UTF-8")
        argv = [local(arg) for arg in image.entrypoint + image.cmd]
        executable = shutil.which(argv[0], path=env["PATH"])
        assert executable and Path(executable).parent == clean_venv / "bin", executable
        log_path = tmp_path / "daemon.log"
        with open(log_path, "wb") as log:
            daemon = await asyncio.create_subprocess_exec(
                executable, *argv[1:], cwd=local(image.workdir), env=env,
                stdout=log, stderr=subprocess.STDOUT)
            try:
                await exercise(daemon, env, receiver, config)
            except AssertionError as error:
                raise AssertionError(f"{error}\n--- daemon log:\n"
                                     f"{log_path.read_text(encoding='utf-8')}") from error
            finally:
                if daemon.returncode is None:
                    daemon.kill()
                    await daemon.wait()
        text = log_path.read_text(encoding="utf-8")
        assert daemon.returncode == 0, text
        assert text.count("gateway started") == 1 and "gateway stopped" in text, text
        assert "signal SIGTERM: draining" in text, text
        assert not re.search(r"level=(warning|error)|Traceback", text), text
        assert not any(secret in text for secret in secrets.values())
        assert (state / Path(original["gateway"]["store"]).name).exists()

    async def exercise(daemon, env, receiver, config):
        base_api = f"http://127.0.0.1:{api_port}"
        base_ops = f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                assert daemon.returncode is None, "the daemon exited while starting"
                if await http_status(http, f"{base_ops}/readyz") == 200:
                    break
                await asyncio.sleep(0.05)
            assert await http_status(http, f"{base_ops}/readyz") == 200

            # The HEALTHCHECK, as Docker runs it (mapped to the test's paths and ports).
            check = [local(arg) for arg in image.healthcheck]
            check[0] = shutil.which(check[0], path=env["PATH"])
            assert Path(check[0]).parent == clean_venv / "bin"
            for container_port, port in ports.items():
                check = [arg.replace(f"127.0.0.1:{container_port}/", f"127.0.0.1:{port}/")
                         for arg in check]
            timeout = seconds(image.healthcheck_options["timeout"])
            assert await run_command(check, env, timeout) == 0
            dead = [arg.replace(f":{metrics_port}/", f":{free_port()}/") for arg in check]
            assert await run_command(dead, env, timeout) != 0, "a dead port must fail the check"

            # A message through the API reaches "delivered": the receipt tables were found.
            app = next(iter(config["apps"].values()))
            template_id, template = next(iter(config["templates"].items()))
            params = {name: "A123" for name in re.findall(r"\{\{(\w+)\}\}", template["content"])}
            auth = {"Authorization": aiohttp.encode_basic_auth(app["app_key"],
                                                               env[app["master_secret_env"]])}
            async with http.post(f"{base_api}/v1/messages", headers=auth, json={
                    "mobile": "13800138000", "temp_id": int(template_id),
                    "temp_para": params}) as response:
                assert response.status == 200, await response.text()
                msg_id = (await response.json())["msg_id"]
            view = {}
            for _ in range(200):
                async with http.get(f"{base_api}/v1/messages/{msg_id}", headers=auth) as response:
                    view = await response.json()
                if view.get("status") == "delivered":
                    break
                await asyncio.sleep(0.05)
            assert view.get("status") == "delivered" and view.get("stat") == "DELIVRD", view
            await eventually(lambda: receiver.received, timeout=10)
            kind, headers, body = receiver.received[0]
            assert kind == "status_callback"
            form = dict(urllib.parse.parse_qsl(body.decode("ascii")))
            signed = (f"appKey={app['app_key']}&appMasterSecret={env[app['master_secret_env']]}"
                      f"&nonce={form['nonce']}&timestamp={form['timestamp']}")
            assert form["signature"] == hashlib.sha1(signed.encode()).hexdigest()
            assert (form["type"], json.loads(form["data"])["msgId"]) == ("SMS_REPORT",
                                                                         str(msg_id))
            async with http.get(f"{base_ops}/metrics") as response:
                metrics = await response.text()
            # DELIVRD is labelled by name only when the provider's table lists it.
            assert re.search(r'cmpp_receipt_stats_total\{[^}]*stat="DELIVRD"', metrics), metrics

        daemon.send_signal(signal.Signals[image.stopsignal])
        drain = config["gateway"].get("drain_timeout", 30)
        assert await asyncio.wait_for(daemon.wait(), drain + 15) == 0

    run(scenario, timeout=120)


async def run_command(argv: list[str], env: dict, timeout: float) -> int:
    process = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        return -1


# ============================================================================= systemd

def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows repeating a key)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        name, _, value = line.partition("=")
        current.setdefault(name.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_passes_systemd_analyze_verify_and_security(tmp_path):
    analyze = require("systemd-analyze", "systemd")
    daemon = Path(sys.executable).parent / "cmpp-gateway"
    assert daemon.exists(), f"{daemon}: install the project (pip install -e .)"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"{IMAGE_VENV}/bin/cmpp-gateway") == 2      # ExecStart, ExecReload
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(f"{IMAGE_VENV}/bin/cmpp-gateway", str(daemon)), encoding="utf-8")

    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    about_unit = [line for line in output.splitlines() if UNIT.name in line or str(unit) in line]
    assert result.returncode == 0 and not about_unit, output

    result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert exposure and float(exposure.group(1)) <= 2.0, result.stdout


def test_the_systemd_unit_runs_the_daemon_as_designed():
    service = unit_directives(UNIT.read_text(encoding="utf-8"))["Service"]
    config = container_config()["gateway"]

    def one(key: str) -> str:
        [value] = service[key]
        return value
    assert one("Type") in ("simple", "exec")
    assert one("User") == "cmpp-gateway"
    assert one("ExecStart") == f"{IMAGE_VENV}/bin/cmpp-gateway run --config {IMAGE_CONFIG}"
    assert service["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert one("KillSignal") == "SIGTERM"
    assert seconds(one("TimeoutStopSec") + ("s" if one("TimeoutStopSec").isdigit() else "")) > \
        config["drain_timeout"]
    assert one("Restart") == "on-failure" and one("RestartSec")
    assert one("RestartPreventExitStatus") == "2"      # cmpp-gateway run: a refused config
    assert one("StateDirectory") == Path(IMAGE_STATE).name
    assert Path(config["store"]).parent == Path(IMAGE_STATE)
    assert one("ConfigurationDirectory") == Path(IMAGE_CONFIG).parent.name
    assert one("EnvironmentFile") == "-/etc/cmpp-gateway/secrets.env"
    hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                 "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
                 "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
                 "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
                 "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
                 "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": ""}
    assert {key: service.get(key, [None])[0] for key in hardening} == hardening
    assert "@system-service" in service["SystemCallFilter"]


def test_the_sysusers_file_creates_the_units_user(tmp_path):
    sysusers = require("systemd-sysusers", "systemd")
    (tmp_path / "etc").mkdir()
    result = subprocess.run([sysusers, f"--root={tmp_path}", "--dry-run",
                             str(DEPLOY / "systemd" / "cmpp-gateway.sysusers")],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Creating user 'cmpp-gateway'" in output, output


# ============================================================================= Prometheus

def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = require("promtool", "prometheus")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"),
                                  ("check", "rules", "alerts.yml"),
                                  ("test", "rules", "alerts_test.yml")],
                         ids=lambda args: " ".join(args))
def test_promtool(args):
    *command, name = args
    result = promtool(*command, str(PROMETHEUS / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired, quiet = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert alerts == fired == quiet
    expected = {"CmppChannelDown", "CmppLoginsRefused", "CmppDeliveredRatioLow",
                "CmppUnmatchedReceiptsRising", "CmppBacklogGrowing", "CmppSubmitLatencyHigh",
                "CmppCallbacksGivenUp", "CmppCallbacksRetrying", "CmppStoreNotWritable",
                "CmppStoreGrowing", "CmppUnmatchedReceiptsExpiring", "CmppRepeatWindowFull"}
    assert expected <= alerts


def test_prometheus_scrapes_the_metrics_port_of_a_host():
    """(The Kubernetes job is checked against the manifests in test_kubernetes.py.)"""
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    metrics_port = split_host_port(container_config()["gateway"]["metrics_listen"])[1]
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    targets = [t for job in jobs.values() for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    assert targets and all(split_host_port(t)[1] == metrics_port for t in targets)
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())
    assert "alerts.yml" in scrape["rule_files"]


# ============================================================================= metric names

PROMQL_WORDS = {
    # aggregations and keywords
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "days_in_month", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
    "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "time", "timestamp",
    "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
    "last_over_time", "present_over_time", "label_values",
}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promql_metrics(expr: str) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(metric names, labels grouped by, metric -> labels it is matched on) of a PromQL
    expression; Grafana's $variables and label_values(selector, label) are understood."""
    expr = re.sub(r"\$\{?\w+\}?", "1m", expr)
    matchers: dict[str, set[str]] = {}
    for name, body in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expr):
        matchers.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    grouped = {label.strip() for _, labels in GROUPING.findall(bare)
               for label in labels.split(",") if label.strip()}
    values_of = re.compile(r"\blabel_values\(\s*(.*?)\s*,\s*(\w+)\s*\)")
    grouped |= {label for _, label in values_of.findall(bare)}
    bare = GROUPING.sub(" ", values_of.sub(r"(\1)", bare))
    names = {token for token in re.findall(r"(?<![\w.:])[a-zA-Z_:][\w:]*", bare)
             if token not in PROMQL_WORDS}
    return names, grouped, matchers


def test_promql_metric_extraction():
    names, grouped, matchers = promql_metrics(
        'histogram_quantile(0.99, sum by (channel, le) (rate(x_bucket{instance=~"$instance", '
        'channel!="a"}[$__rate_interval]))) / on (channel) group_left y_total > 1e3 '
        'and label_values(z{q="by (w)"}, instance)')
    assert names == {"x_bucket", "y_total", "z"}
    assert grouped == {"channel", "le", "instance"}
    assert matchers == {"x_bucket": {"instance", "channel"}, "z": {"q"}}


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name a running gateway exports, with its label names: /metrics of a
    gateway (with the simulator, an app and traffic) plus the families gateway.metrics
    defines (their children exist only once something was counted)."""
    scraped: list[str] = []

    async def scenario(tmp: Path):
        async with Simulator(SimulatorConfig(accounts=[Account("900001", "secret")],
                                             report_delay=0.01)) as sim:
            config = parse_config(
                f'[gateway]\nstore = "{tmp / "gw.sqlite"}"\n[channels.cmcc]\n'
                f'provider = "default"\nhost = "127.0.0.1"\nport = {sim.address[1]}\n'
                'account = "900001"\npassword = "secret"\naccess_number = "10690001"\n'
                'connections = 2\n[apps.shop]\napp_key = "shop"\nmaster_secret = "shop-secret"\n')
            gateway = Gateway(config, GatewayOptions(
                tuning=PoolTuning(reconnect=Backoff(0.01, 0.05)),
                api_address=("127.0.0.1", 0), ops_address=("127.0.0.1", 0)))
            await gateway.start()
            try:
                await gateway.pools["cmcc"].wait_ready()
                accepted = await gateway.accept([NewMessage("shop", "cmcc", "13800138000",
                                                            f"m{i}") for i in range(3)])

                async def final():
                    views = [await gateway.store.message(a.id) for a in accepted]
                    return all(v.status == "delivered" for v in views)
                for _ in range(200):
                    if await final():
                        break
                    await asyncio.sleep(0.02)
                host, port = gateway.ops.address
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://{host}:{port}/metrics") as response:
                        scraped.append(await response.text())
            finally:
                await gateway.stop()

    with tempfile.TemporaryDirectory() as tmp:
        run(lambda: scenario(Path(tmp)), timeout=60)
    series: dict[str, set[str]] = {}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "gauge": [""]}
    for family in text_string_to_metric_families(scraped[0]):
        for suffix in suffixes.get(family.type, [""]):
            series.setdefault(family.name + suffix, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    for family in vars(Metrics()).values():
        labelnames = set(getattr(family, "labelnames", ()))
        if hasattr(family, "buckets"):
            for suffix in ("_bucket", "_sum", "_count"):
                assert family.name + suffix in series, family.name
                bucket = {"le"} if suffix == "_bucket" else set()
                series[family.name + suffix] |= labelnames | bucket
        elif isinstance(family, GaugeFamily):
            assert family.name in series, family.name
            series[family.name] |= labelnames
        elif labelnames:
            assert family.name + "_total" in series, family.name
            series[family.name + "_total"] |= labelnames
    return series


# Prometheus adds these to every series it scrapes (prometheus.yml's relabelling adds none
# that the rules use); `up` is its own series for each scrape.
TARGET_LABELS = {"job", "instance"}
PROMETHEUS_SERIES = {"up": set()}


def check_expressions(exprs: list[tuple[str, str]], exported: dict[str, set[str]]) -> set[str]:
    known = {**exported, **PROMETHEUS_SERIES}
    used = set()
    for where, expr in exprs:
        names, grouped, matchers = promql_metrics(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            assert name in known, f"{where}: {name} is not exported by the gateway"
        labels = set().union(*(known[n] for n in names)) | TARGET_LABELS
        assert grouped <= labels, f"{where}: grouped by {grouped - labels}, not labels of {names}"
        for name, matched in matchers.items():
            assert matched <= known[name] | TARGET_LABELS, f"{where}: {name} has no {matched}"
        used |= names
    return used


def test_the_alerts_use_only_metrics_the_gateway_exports(exported):
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    exprs = [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    used = check_expressions(exprs, exported)
    assert {"cmpp_channel_up", "cmpp_logins_total", "cmpp_receipts_total",
            "cmpp_unmatched_receipts", "cmpp_store_messages",
            "cmpp_submit_latency_seconds_bucket", "cmpp_callbacks_total", "cmpp_store_writable",
            "cmpp_store_size_bytes", "cmpp_store_pruned_rows_total",
            "cmpp_unmatched_receipts_expired_total", "cmpp_api_repeat_window_full_total"} <= used


# ============================================================================= Grafana

def dashboard_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_the_dashboard_shows_what_operators_need_with_exported_metrics_only(exported):
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41 and dashboard["uid"]
    panels = [p for p in dashboard_panels(dashboard) if p["type"] != "row"]
    assert len({p["id"] for p in dashboard_panels(dashboard)}) == len(dashboard_panels(dashboard))
    exprs = [(p["title"], t["expr"]) for p in panels for t in p["targets"]]
    assert all(p["targets"] for p in panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    exprs += [(f"${name}", v["query"]["query"]) for name, v in variables.items()
              if v["type"] == "query"]
    used = check_expressions(exprs, exported)

    def panel_using(*metrics: str) -> None:
        assert any(all(m in e for m in metrics) for _, e in exprs), metrics
    panel_using("cmpp_submits_total", "result")
    panel_using("cmpp_receipts_total")
    panel_using("histogram_quantile(0.5", "cmpp_submit_latency_seconds_bucket")
    panel_using("histogram_quantile(0.99", "cmpp_submit_latency_seconds_bucket")
    panel_using("cmpp_window_in_use")
    panel_using("cmpp_connections{", "state")
    panel_using("by (provider, status)", "cmpp_receipts_total")
    panel_using("by (provider, stat)", "cmpp_receipt_stats_total")
    panel_using("by (status)", "cmpp_store_messages")
    panel_using("outcome", "cmpp_callbacks_total")
    panel_using("cmpp_unmatched_receipts")
    for waited in ("cmpp_accept_to_submit_seconds_bucket", "cmpp_accept_to_final_seconds_bucket"):
        panel_using("histogram_quantile(0.99", "by (priority, le)", waited)
    assert used >= {"cmpp_submits_total", "cmpp_receipts_total", "cmpp_window_in_use"}

    # Panels sit side by side without overlapping, within Grafana's 24 columns.
    cells = set()
    for panel in dashboard_panels(dashboard):
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
