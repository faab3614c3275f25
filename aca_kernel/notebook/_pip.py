"""``%aca_pip``: packages the session lacks, resolved and downloaded here, installed there without network.

Sessions of the service usually have no outbound network (the local pool's sandboxes have none), so
``%pip install`` fails in them. Instead:

1. one execution asks the session for its Python version, implementation, ABI, platform tags, pip, and the
   distributions it has;
2. pip's own resolver runs here for those tags (``pip install --dry-run --report`` with ``--only-binary=:all:
   --platform … --python-version … --implementation … --abi …``, against the user's configured index), with the
   session's distributions pinned as constraints so what the session has is kept;
3. wheels the session lacks come from the cache here, or ``pip download --no-deps`` with the same tags;
4. they are uploaded (streamed, with progress) into ``/mnt/data/.aca-sessions/wheels``, installed there with
   ``pip install --no-index --no-deps``, and removed again; one table says what happened.

``--remote`` runs pip in the session itself, for pools with outbound network. Each install is recorded on the
``SessionState`` (``packages``) so that ``reinstall(state)`` puts them back after the session was recycled.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from .._folders import HIDDEN_DIR, LocalFile, run_json_snippet, snippet, upload_tree
from .._progress import format_bytes as human_size
from .._validation import MAX_UPLOAD_BYTES

if TYPE_CHECKING:
    from ._context import SessionState

__all__ = ["PackageRecord", "PipError", "PipReport", "SessionPython", "cache_dir", "install", "reinstall"]

logger = logging.getLogger("aca_kernel.pip")

WHEEL_DIR = f"{HIDDEN_DIR}/wheels"  # relative to /mnt/data
#: seconds pip may take here (resolution, downloads) and in the session (the service stops executions at 220 s)
LOCAL_TIMEOUT = 600.0
SESSION_TIMEOUT = 200.0


class PipError(Exception):
    """One line that says what failed and what to do; shown without a traceback."""


def cache_dir() -> Path:
    """The wheel cache here: ``$ACA_PIP_CACHE``, else the user cache directory's ``aca-sessions/wheels``."""
    configured = os.environ.get("ACA_PIP_CACHE", "").strip()
    if configured:
        return Path(configured).expanduser()
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("aca-sessions", appauthor=False)) / "wheels"
    except ImportError:  # pragma: no cover - platformdirs comes with jupyter_core
        return Path.home() / ".cache" / "aca-sessions" / "wheels"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the session's Python ---------------------------------------------------------------------------------------

_PROBE = """\
def __aca_sessions_pyenv(spec):
    import importlib, json, os, sys, sysconfig
    import importlib.metadata as md
    if os.path.isdir(spec["target"]) and spec["target"] not in sys.path:
        sys.path.insert(0, spec["target"])
        importlib.invalidate_caches()
    info = {"version": "%d.%d.%d" % sys.version_info[:3], "pip": None, "tags": None}
    try:
        import pip
        info["pip"] = pip.__version__
        from pip._vendor.packaging import tags
    except Exception:
        try:
            from packaging import tags
        except Exception:
            tags = None
    if tags is not None:
        all_tags = list(tags.sys_tags())
        platforms = []
        for t in all_tags:
            if t.platform != "any" and t.platform not in platforms:
                platforms.append(t.platform)
        info["tags"] = {"interpreter": all_tags[0].interpreter, "abi": all_tags[0].abi, "platforms": platforms}
    dists = {}
    for d in md.distributions():
        name = d.metadata["Name"]
        if name and name not in dists:
            dists[name] = d.version
    info["dists"] = dists
    info["writable"] = os.access(sysconfig.get_paths()["purelib"], os.W_OK)
    return json.dumps(info)
"__ACA_PYENV__ " + globals().pop("__aca_sessions_pyenv")(__import__("json").loads({literal}))"""


#: where the session installs when its site-packages is read-only (the local pool's sandbox); on sys.path there
SESSION_SITE = "/tmp/aca-sessions-site-packages"


@dataclass(frozen=True)
class SessionPython:
    """What the session told about its Python: version, tags, pip, installed distributions."""

    version: str
    interpreter: str  # 'cp311'
    abi: str  # 'cp311'
    platforms: tuple[str, ...]
    pip: str | None
    dists: dict[str, str]  # canonical name -> version
    writable: bool  # site-packages can be written (else pip installs into SESSION_SITE)

    @classmethod
    def probe(cls, state: SessionState) -> SessionPython:
        info = run_json_snippet(state.client, snippet(_PROBE, {"target": SESSION_SITE}), "__ACA_PYENV__ ",
                                "ask the session about its Python")
        if not info.get("pip"):
            raise PipError(f"The session's Python ({info.get('version')}) has no pip, so it cannot install wheels; "
                           "use a session image with pip.")
        tags = info.get("tags") or {}
        if not tags.get("platforms"):
            raise PipError("The session did not report its platform tags (no packaging module next to its pip).")
        return cls(version=str(info["version"]), interpreter=str(tags["interpreter"]), abi=str(tags["abi"]),
                   platforms=tuple(tags["platforms"]), pip=str(info["pip"]),
                   dists={canonical(k): str(v) for k, v in (info.get("dists") or {}).items()},
                   writable=bool(info.get("writable")))

    @property
    def implementation(self) -> str:
        return re.match(r"[a-z]+", self.interpreter).group(0) if re.match(r"[a-z]+", self.interpreter) else "cp"

    @property
    def short_version(self) -> str:
        return ".".join(self.version.split(".")[:2])

    def pip_flags(self) -> list[str]:
        flags = ["--only-binary=:all:", "--python-version", self.short_version, "--implementation",
                 self.implementation, "--abi", self.abi]
        for platform in self.platforms:
            flags += ["--platform", platform]
        return flags

    @property
    def platform(self) -> str:
        """The platform tag a person recognises (manylinux_2_36_x86_64 rather than linux_x86_64)."""
        return next((p for p in self.platforms if not p.startswith("linux_")), self.platforms[0])

    def tags_text(self) -> str:
        more = f" and {len(self.platforms) - 1} other platform tags" if len(self.platforms) > 1 else ""
        return f"{self.interpreter}-{self.abi}-{self.platform}{more}, or pure-Python py3-none-any"


# --- pip here -------------------------------------------------------------------------------------------------

def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--no-color", *args]
    logger.info("running %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=LOCAL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise PipError(f"pip here took longer than {LOCAL_TIMEOUT:.0f} s and was stopped.") from exc


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _errors(output: str) -> list[str]:
    """pip's ``ERROR:`` lines, without the prefix and colours."""
    lines = (_ANSI.sub("", ln).strip() for ln in output.splitlines())
    return [ln[len("ERROR: "):] for ln in lines if ln.startswith("ERROR: ")]


_VERSION = re.compile(r"^\d+(\.\d+)*([._-]?(a|b|rc|alpha|beta|c|pre|preview)\d*)?([._-]?(post|rev|r)\d*)?"
                      r"([._-]?dev\d*)?(\+[a-z0-9]+([._-][a-z0-9]+)*)?$", re.IGNORECASE)


@dataclass
class Wheel:
    """One distribution of the resolution and what became of it."""

    name: str
    version: str
    filename: str
    url: str
    requested: bool
    had: str | None  # the version the session had
    direct: bool = False  # a URL or file, not a name on the index
    path: Path | None = None
    source: str = ""  # 'cache', 'downloaded', 'local file'

    @property
    def needed(self) -> bool:
        return self.had != self.version

    @property
    def size(self) -> int | None:
        return self.path.stat().st_size if self.path is not None and self.path.is_file() else None


def _requirement(text: str) -> Requirement | None:
    """``text`` as a requirement specifier (``name[extras] <spec>; marker``); None for a path, URL or option."""
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _request_name(text: str) -> str:
    """The canonical distribution name a command-line or requirements-file entry asks for (best effort)."""
    req = _requirement(text)
    if req is not None:
        return canonical(req.name)
    base = unquote(urlparse(text).path).rsplit("/", 1)[-1]
    if base.endswith(".whl"):  # a wheel file or URL: its name is the file name's first part
        return canonical(base.split("-", 1)[0])
    return canonical(re.split(r"[\s\[<>=!~;@(]", text.strip(), maxsplit=1)[0])


def _file_entries(path: Path, seen: set[Path] | None = None) -> list[str]:
    """The requirements of a requirements file as pip reads them: comments and continuations handled, nested
    ``-r`` files followed, other options left out; an editable (``-e``) is kept as an entry of its own."""
    seen = set() if seen is None else seen
    if path.resolve() in seen or not path.is_file():
        return []
    seen.add(path.resolve())
    entries: list[str] = []
    for line in re.sub(r"\\\n", "", path.read_text(errors="replace")).splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        option = re.match(r"(-r|--requirement)(\s+|=)(\S+)$|(-e|--editable)(\s+|=)(\S+)$", line)
        if option and option.group(3):
            entries += _file_entries(path.parent / option.group(3), seen)
        elif option:
            entries.append(option.group(6))
        elif line and not line.startswith("-"):
            entries.append(line)
    return entries


def _satisfied(req: Requirement | None, installed: str | None) -> bool:
    """The session's installed version satisfies ``req`` (pip: "Requirement already satisfied")."""
    if req is None or req.url or installed is None:
        return False
    try:
        return req.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return False


def _classify(env: SessionPython, specs: list[str], requirements: list[Path], *,
             upgrade: bool = False) -> tuple[set[str], list[Wheel]]:
    """What is asked for, against what the session has: the names whose pin must be released (not installed at a
    satisfying version, or ``upgrade``), and the session's distributions that already satisfy every request of
    theirs (without extras: those can need more), as rows of the report."""
    entries = list(specs) + [e for r in requirements for e in _file_entries(r)]
    released: set[str] = set()
    kept: dict[str, Wheel] = {}
    for text in entries:
        name, req = _request_name(text), _requirement(text)
        if upgrade or not _satisfied(req, env.dists.get(name)):
            released.add(name)
        elif not req.extras:
            kept.setdefault(name, Wheel(req.name, env.dists[name], "", "", requested=True, had=env.dists[name]))
    return released, [w for name, w in kept.items() if name not in released]


def resolve(env: SessionPython, specs: list[str], requirements: list[Path], released: set[str]) -> list[Wheel]:
    """pip's resolution of ``specs`` for the session's tags; what the session has is pinned as constraints, except
    the ``released`` names (``_classify``: asked for at a version the session does not have, or to upgrade)."""
    with tempfile.TemporaryDirectory(prefix="aca-pip-") as tmp:
        constraints = Path(tmp, "session.txt")
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(env.dists.items())
                                       if name not in released and _VERSION.match(version)))
        report = Path(tmp, "report.json")
        args = ["install", "--dry-run", "--ignore-installed", "--report", str(report), *env.pip_flags(),
                "-c", str(constraints), *specs]
        for req in requirements:
            args += ["-r", str(req)]
        proc = _pip(args)
        if proc.returncode != 0 or not report.is_file():
            raise _resolution_error(proc.stdout + "\n" + proc.stderr, env, specs)
        data = json.loads(report.read_text())
    wheels = []
    for item in data.get("install", []):
        meta, info = item.get("metadata", {}), item.get("download_info", {})
        url = str(info.get("url", ""))
        wheels.append(Wheel(name=str(meta.get("name")), version=str(meta.get("version")),
                            filename=unquote(urlparse(url).path.rsplit("/", 1)[-1]), url=url,
                            requested=bool(item.get("requested")), had=env.dists.get(canonical(str(meta.get("name")))),
                            direct=bool(item.get("is_direct"))))
    return wheels


def _resolution_error(output: str, env: SessionPython, specs: list[str]) -> PipError:
    errors = _errors(output)
    text = " ".join(errors)
    if "ResolutionImpossible" in text or "conflicting dependencies" in text or "Cannot install" in text:
        causes = []
        lines = output.splitlines()
        if "The conflict is caused by:" in output:
            start = next(i for i, ln in enumerate(lines) if "The conflict is caused by:" in ln) + 1
            for ln in lines[start:]:
                if not ln.strip():
                    break
                causes.append(ln.strip())
        head = next((e for e in errors if "Cannot install" in e or "conflict" in e.lower()), errors[0] if errors else "")
        pinned = " Packages the session already has are pinned at their installed versions; name one (e.g. " \
                 "'numpy>=2') to let it change." if "(constraint)" in output else ""
        return PipError("Conflict: " + head + (" The conflict is caused by: " + "; ".join(causes) if causes else "")
                        + pinned)
    missing = re.search(r"No matching distribution found for ([^\s]+)", text)
    if missing:
        req = missing.group(1)
        name = re.split(r"[<>=!~;\[@]", req, maxsplit=1)[0]
        probe = _pip(["index", "versions", name])
        if probe.returncode == 0 and "Available versions" in probe.stdout:
            return PipError(f"{req}: no wheel for the session's platform ({env.tags_text()}); the index has only "
                            f"a source distribution or wheels for other platforms. Build one here with "
                            f"`pip wheel --no-deps {name}` and %aca_pip install the .whl file if it is pure Python, "
                            f"or use %aca_pip --remote install on a pool with outbound network.")
        return PipError(f"{req}: not found on the package index (pip: {errors[-1] if errors else 'no details'}).")
    return PipError("pip could not resolve " + " ".join(specs) + ": " + (errors[-1] if errors else output.strip()[-300:]))


def fetch(wheels: list[Wheel], env: SessionPython, *, use_cache: bool = True) -> None:
    """Put each needed wheel in the cache (``wheel.path``): from the cache, a local file, or ``pip download``."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    download = []
    for wheel in (w for w in wheels if w.needed):
        if wheel.url.startswith("file:"):
            wheel.path, wheel.source = Path(url2pathname(urlparse(wheel.url).path)), "local file"
        elif use_cache and (cache / wheel.filename).is_file():
            wheel.path, wheel.source = cache / wheel.filename, "cache"
        else:
            download.append(wheel)
    if download:
        with tempfile.TemporaryDirectory(prefix="aca-pip-", dir=cache) as tmp:
            reqs = [w.url if w.direct else f"{w.name}=={w.version}" for w in download]
            proc = _pip(["download", "--no-deps", *env.pip_flags(), "-d", tmp, *reqs])
            if proc.returncode != 0:
                raise PipError("pip download failed: " + (_errors(proc.stderr + proc.stdout) or ["no details"])[-1])
            for wheel in download:
                got = Path(tmp, wheel.filename)
                if not got.is_file():  # the same resolution picks the same file; tolerate another name
                    prefix = f"{canonical(wheel.name).replace('-', '_')}-{wheel.version}-"
                    got = next((p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith(prefix)), got)
                if not got.is_file():
                    raise PipError(f"pip download did not produce a wheel for {wheel.name} {wheel.version}.")
                wheel.filename = got.name
                wheel.path, wheel.source = Path(shutil.move(str(got), cache / got.name)), "downloaded"
    for wheel in (w for w in wheels if w.needed):
        size = wheel.size or 0
        if size > MAX_UPLOAD_BYTES:
            raise PipError(f"{wheel.filename} is {human_size(size)}; the service accepts at most 128 MB per file, so "
                           f"it cannot be uploaded. Use %aca_pip --remote install {wheel.name} on a pool with "
                           "outbound network, or a session image that has it.")


# --- the session's side ------------------------------------------------------------------------------------------

_INSTALL = """\
def __aca_sessions_pip(spec):
    import importlib, json, os, shutil, subprocess, sys
    args = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-color",
            "--no-warn-script-location"] + spec["args"]
    target = None
    if not spec["writable"]:
        target = spec["target"]
        os.makedirs(target, exist_ok=True)
        args += ["--target", target, "--upgrade"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=spec["timeout"])
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = -1, "", "ERROR: pip took longer than %d s" % spec["timeout"]
    if target and rc == 0:
        if target not in sys.path:
            sys.path.insert(0, target)
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if target not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([target] + paths)
    importlib.invalidate_caches()
    if rc == 0 and spec["cleanup"]:
        shutil.rmtree(spec["cleanup"], ignore_errors=True)
    loaded = sorted(m for m in spec["modules"] if m in sys.modules)
    return json.dumps({"rc": rc, "out": out[-6000:], "err": err[-6000:], "loaded": loaded})
"__ACA_PIP__ " + globals().pop("__aca_sessions_pip")(__import__("json").loads({literal}))"""


def _session_pip(state: SessionState, args: list[str], *, writable: bool, cleanup: str | None = None,
                 modules: list[str] | None = None) -> dict[str, Any]:
    spec = {"args": args, "writable": writable, "target": SESSION_SITE, "timeout": SESSION_TIMEOUT,
            "cleanup": cleanup, "modules": modules or []}
    return run_json_snippet(state.client, snippet(_INSTALL, spec), "__ACA_PIP__ ", "run pip",
                            timeout=SESSION_TIMEOUT + 15)


def _session_failure(answer: dict[str, Any], remote: bool) -> PipError:
    output = answer.get("out", "") + "\n" + answer.get("err", "")
    errors = _errors(output)
    last = errors[-1] if errors else (output.strip().splitlines() or ["no output"])[-1]
    offline = any(s in output for s in ("NewConnectionError", "Temporary failure in name resolution",
                                         "Network is unreachable", "No address associated"))
    if remote and offline:
        return PipError(f"pip in the session has no outbound network ({last}); use %aca_pip install without "
                        "--remote: the wheels are then resolved and downloaded here.")
    return PipError(f"pip in the session failed: {last}")


def _top_level(path: Path) -> list[str]:
    """The import names a wheel provides (for the 'already imported' warning)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = {n.split("/", 1)[0] for n in zf.namelist()}
    except (OSError, zipfile.BadZipFile):
        return []
    return sorted(n.removesuffix(".py") for n in names if not n.endswith((".dist-info", ".data")) and
                  (n.isidentifier() or n.endswith(".py")))


# --- records, reports ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackageRecord:
    """What ``%aca_pip`` installed in a session: a wheel from the cache here, or (``--remote``) a pip argument list."""

    name: str
    version: str
    wheel: str | None = None  # file name in the cache
    remote_args: tuple[str, ...] = ()


class PipReport:
    """The one table ``%aca_pip`` shows: package, version, what happened, size."""

    def __init__(self, rows: list[tuple[str, str, str, str]], notes: list[str]) -> None:
        self.rows, self.notes = rows, notes

    def __repr__(self) -> str:
        head = ("Package", "Version", "Status", "Size")
        rows = [head, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + self.notes)

    def _repr_html_(self) -> str:
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows)
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return ("<table class='aca-pip'><thead><tr><th style='text-align:left'>Package</th><th style='text-align:left'>"
                "Version</th><th style='text-align:left'>Status</th><th style='text-align:left'>Size</th></tr>"
                f"</thead><tbody>{body}</tbody></table>{notes}")


def _show(report: PipReport) -> None:
    from IPython.display import display

    display(report)


def _status_line(text: str) -> None:
    print(text, flush=True)


# --- install -----------------------------------------------------------------------------------------------------

def install(shell: Any, state: SessionState, specs: list[str], requirements: list[Path], *, remote: bool = False,
            use_cache: bool = True, upgrade: bool = False) -> PipReport:
    """``%aca_pip install``: see the module docstring."""
    env = SessionPython.probe(state)
    if remote:
        return _install_remote(state, env, ["--upgrade", *specs] if upgrade else specs, requirements)
    released, satisfied = _classify(env, specs, requirements, upgrade=upgrade)
    if not released and satisfied:  # like pip: "Requirement already satisfied", without asking the index
        report = _install_wheels(shell, state, env, satisfied)
        _show(report)
        return report
    _status_line(f"Resolving {' '.join(specs + [f'-r {r.name}' for r in requirements])} for the session's Python "
                 f"{env.version} ({env.interpreter}, {env.platform})…")
    wheels = resolve(env, specs, requirements, released)
    fetch(wheels, env, use_cache=use_cache)
    report = _install_wheels(shell, state, env, wheels)
    _show(report)
    return report


def _install_wheels(shell: Any, state: SessionState, env: SessionPython, wheels: list[Wheel]) -> PipReport:
    needed = [w for w in wheels if w.needed]
    notes: list[str] = []
    if needed:
        _upload_wheels(shell, state, needed)
        upgraded = [m for w in needed if w.had for m in _top_level(w.path)] if any(w.had for w in needed) else []
        answer = _session_pip(state, ["--no-index", "--no-deps",
                                      *[f"/mnt/data/{WHEEL_DIR}/{w.filename}" for w in needed]],
                              writable=env.writable, cleanup=f"/mnt/data/{WHEEL_DIR}", modules=upgraded)
        if answer.get("rc") != 0:
            raise _session_failure(answer, remote=False)
        if answer.get("loaded"):
            notes.append(f"Already imported in the session: {', '.join(answer['loaded'])}; the old version stays "
                         "in use until the session starts over (%aca_new_session, then %aca_replay).")
        _record(state, [PackageRecord(w.name, w.version, wheel=w.filename) for w in needed])
    rows = []
    for w in sorted(wheels, key=lambda w: (not w.requested, canonical(w.name))):
        if not w.needed:
            status = "already satisfied"
        else:
            verb = f"{_change(w.had, w.version)} from {w.had}" if w.had else "installed"
            status = f"{verb} ({'from the cache' if w.source == 'cache' else w.source})"
        rows.append((w.name, w.version, status, human_size(w.size) if w.needed else ""))
    if not rows:
        notes.append("Nothing to install.")
    elif not needed:
        notes.append("Nothing to install: the session already has every package at a satisfying version.")
    return PipReport(rows, notes)


def _change(had: str, version: str) -> str:
    try:
        return "downgraded" if Version(version) < Version(had) else "upgraded"
    except InvalidVersion:
        return "replaced"


def _upload_wheels(shell: Any, state: SessionState, wheels: list[Wheel]) -> None:
    from ._filemagics import progress_display

    present = {}
    try:
        present = {f.name: f.size for f in state.client.list_files(path=WHEEL_DIR)}
    except Exception:  # no folder yet (404), or a listing problem: upload them all
        present = {}
    send = [LocalFile(w.filename, w.path, w.size or 0) for w in wheels
            if w.path is not None and present.get(w.filename) != w.size]
    if not send:
        return
    total = sum(f.size for f in send)
    bar = progress_display(shell, total, f"upload {len(send)} wheel{'s' if len(send) != 1 else ''}")
    result = upload_tree(state.client, send, WHEEL_DIR, progress=bar)
    if result.failed:
        bar.fail("failed")
        raise result.failed[0][1]
    bar.succeed("done")


def _install_remote(state: SessionState, env: SessionPython, specs: list[str], requirements: list[Path]) -> PipReport:
    args = list(specs)
    for req in requirements:
        name = f"{WHEEL_DIR.rsplit('/', 1)[0]}/requirements-{uuid.uuid4().hex[:8]}.txt"
        state.client.upload_file(req, name)
        args += ["-r", f"/mnt/data/{name}"]
    _status_line(f"Running pip install {' '.join(args)} in the session…")
    answer = _session_pip(state, args, writable=env.writable)
    if answer.get("rc") != 0:
        raise _session_failure(answer, remote=True)
    installed = re.search(r"Successfully installed (.+)", answer.get("out", ""))
    rows, records = [], []
    for item in (installed.group(1).split() if installed else []):
        name, _, version = item.rpartition("-")
        rows.append((name, version, "installed (pip in the session)", ""))
        records.append(PackageRecord(name, version, remote_args=tuple(specs)))
    _record(state, records)
    report = PipReport(rows, [] if rows else ["Nothing to install: the session already has it all."])
    _show(report)
    return report


def _record(state: SessionState, records: list[PackageRecord]) -> None:
    """Remember what was installed (one record per distribution, the newest wins) for ``reinstall``."""
    names = {canonical(r.name) for r in records}
    state.packages[:] = [r for r in state.packages if canonical(r.name) not in names] + records


# --- replay ----------------------------------------------------------------------------------------------------

def reinstall(shell: Any, state: SessionState) -> PipReport | None:
    """Install again what ``%aca_pip`` installed in this session before (after the session was recycled)."""
    if not state.packages:
        return None
    env = SessionPython.probe(state)
    wheels, remote_args = [], []
    for record in state.packages:
        if record.remote_args:
            if env.dists.get(canonical(record.name)) != record.version and record.remote_args not in remote_args:
                remote_args.append(record.remote_args)
            continue
        cached = cache_dir() / record.wheel if record.wheel else None
        wheels.append(Wheel(record.name, record.version, record.wheel or "", url="", requested=True,
                            had=env.dists.get(canonical(record.name)),
                            path=cached if cached is not None and cached.is_file() else None, source="cache"))
    missing = [w for w in wheels if w.needed and w.path is None]
    if missing:  # the cache was cleared: download exactly those versions again
        fetch(missing, env, use_cache=False)
    report = _install_wheels(shell, state, env, wheels)
    for args in remote_args:
        _install_remote(state, env, list(args), [])
    _show(report)
    return report


def show_installed(state: SessionState) -> None:
    rows = [(r.name, r.version, "pip in the session" if r.remote_args else f"wheel {r.wheel}", "")
            for r in state.packages]
    _show(PipReport(rows, [] if rows else ["%aca_pip has installed nothing in this session yet."]))


def cache_summary(purge: bool = False) -> str:
    cache = cache_dir()
    files = list(cache.glob("*.whl")) if cache.is_dir() else []
    if purge:
        for f in files:
            f.unlink(missing_ok=True)
        return f"Removed {len(files)} wheel(s) from {cache}"
    return f"{len(files)} wheel(s), {human_size(sum(f.stat().st_size for f in files))} in {cache}"
