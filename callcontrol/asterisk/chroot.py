"""The Debian sid chroot the sandbox runs Asterisk 22 in: built once, cached, rebuilt when missing.

Debian 12 has no Asterisk package; sid has Asterisk 22. ``ensure_chroot`` runs ``debootstrap``
into a temporary folder next to the cache entry and renames it into place only when it is
complete, so a killed build never leaves half a chroot where a later run would take it for whole.
The entry's name is a hash of the suite and the package list: changing the list builds anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dialplan.errors import CallControlError

SUITE = "sid"
PACKAGES = ("asterisk", "asterisk-modules", "asterisk-core-sounds-en-gsm")
DEFAULT_CACHE = Path("/var/cache/callcontrol")
CACHE_ENV = "ASTERISK_SANDBOX_CACHE"
MIRROR_ENV = "ASTERISK_SANDBOX_MIRROR"
BUILD_TIMEOUT = 1200.0
"""Seconds a debootstrap may take (about a minute on a good link)."""
APT_TIMEOUT = 600.0

Echo = Callable[[str], None]


class SandboxError(CallControlError):
    """The sandbox cannot be built, started, reached or stopped; says why in one line."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "the Asterisk sandbox needs root (it builds and enters a chroot): run it as root"
        )


def cache_dir(override: Path | None = None) -> Path:
    """``override``, else ``$ASTERISK_SANDBOX_CACHE``, else /var/cache/callcontrol."""
    if override is not None:
        return override
    from_env = os.environ.get(CACHE_ENV)
    return Path(from_env) if from_env else DEFAULT_CACHE


def chroot_key(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    text = f"{suite} minbase {platform.machine()} {' '.join(sorted(packages))}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def chroot_path(cache: Path) -> Path:
    return cache / f"chroot-{SUITE}-{chroot_key()}"


def is_complete(root: Path) -> bool:
    return (root / "usr/sbin/asterisk").is_file() and (root / "usr/share/asterisk").is_dir()


def modules_dir(root: Path) -> str:
    """Asterisk's module folder inside the chroot, as Asterisk sees it."""
    found = sorted(root.glob("usr/lib/*/asterisk/modules"))
    if not found:
        raise SandboxError(f"{root} holds no Asterisk modules: remove it to rebuild")
    return "/" + str(found[0].relative_to(root))


_DEB822_URI = re.compile(r"^URIs:\s*(\S+)", re.MULTILINE)
_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", re.MULTILINE)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses (``$ASTERISK_SANDBOX_MIRROR`` wins)."""
    from_env = os.environ.get(MIRROR_ENV)
    if from_env:
        return from_env
    candidates: list[str] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            if re.search(r"^Enabled:\s*no", stanza, re.MULTILINE | re.IGNORECASE):
                continue
            if not re.search(r"^Types:.*\bdeb\b", stanza, re.MULTILINE):
                continue
            suites = re.search(r"^Suites:\s*(.*)$", stanza, re.MULTILINE)
            if suites and all(s.endswith("-security") for s in suites.group(1).split()):
                continue
            candidates += _DEB822_URI.findall(stanza)
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for uri, suite in _ONE_LINE.findall(path.read_text(errors="replace")):
                if not suite.endswith("-security"):
                    candidates.append(uri)
    for uri in candidates:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    raise SandboxError(
        f"no Debian archive found in {apt_dir}'s sources: set {MIRROR_ENV} to a Debian mirror URL"
    )


def tool(name: str) -> str | None:
    """A system tool's path; root's tools live in sbin, which a PATH may leave out."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def ensure_debootstrap(echo: Echo) -> str:
    """The path of debootstrap, installed with apt-get when missing."""
    found = tool("debootstrap")
    if found:
        return found
    echo("installing debootstrap with apt-get")
    install = ["apt-get", "install", "-y", "-q", "debootstrap"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for attempt in ([install], [["apt-get", "update", "-q"], install]):
        ok = True
        for command in attempt:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=APT_TIMEOUT, env=environment
            )
            ok = ok and result.returncode == 0
        found = tool("debootstrap")
        if ok and found:
            return found
    raise SandboxError("debootstrap is missing and apt-get could not install it")


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (a developer's and a test run's may race)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unmount_under(root: Path) -> None:
    """debootstrap mounts /proc and /sys in its target; a killed build leaves them mounted."""
    prefix = str(root.resolve())
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(prefix + "/")), reverse=True):
            subprocess.run(
                [tool("umount") or "umount", "-l", mount], capture_output=True, timeout=30
            )


def _remove(root: Path) -> None:
    _unmount_under(root)
    shutil.rmtree(root, ignore_errors=True)


def ensure_chroot(cache: Path | None = None, echo: Echo = lambda _: None) -> Path:
    """The cached chroot, built first when missing (the build log lands beside it)."""
    cache = cache_dir(cache)
    root = chroot_path(cache)
    if is_complete(root):
        return root
    require_root()
    with _locked(cache):
        if is_complete(root):  # another process built it while we waited
            return root
        for stale in cache.glob(".build-*"):
            _remove(stale)
        if root.exists():
            _remove(root)
        debootstrap = ensure_debootstrap(echo)
        mirror = debian_mirror()
        building = cache / f".build-{root.name}-{os.getpid()}"
        log = cache / f"{root.name}.build.log"
        echo(f"building the Asterisk chroot ({SUITE}: {', '.join(PACKAGES)}) into {root}")
        started = time.monotonic()
        command = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(building),
            mirror,
        ]
        try:
            with log.open("w") as out:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_TIMEOUT,
                )
            if result.returncode != 0 or not is_complete(building):
                tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise SandboxError(
                    f"debootstrap failed (exit {result.returncode}): {tail[0]} (see {log})"
                )
            _unmount_under(building)
            building.rename(root)
        except subprocess.TimeoutExpired:
            raise SandboxError(
                f"debootstrap took longer than {BUILD_TIMEOUT:.0f} s (see {log})"
            ) from None
        finally:
            if building.exists():
                _remove(building)
        echo(f"chroot built in {time.monotonic() - started:.0f} s")
    return root
