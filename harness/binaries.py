"""Real upstream binaries: built from Go modules at pinned versions and cached once per machine.

Kubernetes' own go.mod points its ~30 staging modules at ./staging paths, so
`go install k8s.io/kubernetes/cmd/...@vX` refuses. A small wrapper module that requires the
release and replaces each staging module with its published counterpart builds fine. The
replace list is generated from the go.mod the module proxy serves for the pinned release, so
bumping the pin never needs a hand-edited list. etcd's server module has the same shape
(relative replaces to sibling modules), so the same recipe serves it.

Each bundle is built with a single `go build` so shared packages compile once, into a
temporary directory that is renamed into place only when every binary is there: a killed
build never leaves a half-populated cache. A file lock keeps parallel test workers from
building the same bundle twice.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import BinaryError

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.36.3"
# The etcd release that k8s.io/kubernetes v1.36.3's go.mod pairs with.
ETCD_VERSION = "v3.6.8"
KWOK_VERSION = "v0.8.0"

# Upstream's hack/lib/golang.sh build tags for release binaries.
UPSTREAM_TAGS = "selinux,notest,grpcnotrace"
BUILD_TIMEOUT_S = 75 * 60
DOWNLOAD_TIMEOUT_S = 15 * 60

_REL_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+(\.\.?/\S*)\s*$")
_GODEBUG = re.compile(r"^godebug\s+(.+)$", re.MULTILINE)
_GO_LINE = re.compile(r"^go\s+(\S+)\s*$", re.MULTILINE)


def cache_root() -> Path:
    """Where built binaries live: outside any checkout, shared by every clone on the machine."""
    explicit = os.environ.get("KUBEQUAKE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kubequake"


@dataclass(frozen=True)
class GoBundle:
    """Commands built together from one wrapper module at one version."""

    name: str
    version: str
    main_module: str
    # Extra modules whose served go.mod replaces are folded in too (etcdctl next to etcd).
    extra_modules: tuple[str, ...]
    # package path -> output binary name
    commands: dict[str, str]
    ldflags: Callable[[GoBundle, str], list[str]] = field(compare=False)
    # Directories inside the main module copied next to bin/ (KWOK's stage definitions).
    data_dirs: tuple[str, ...] = ()

    @property
    def home(self) -> Path:
        return cache_root() / self.name / self.version

    @property
    def bin_dir(self) -> Path:
        return self.home / "bin"

    def binary_names(self) -> list[str]:
        return sorted(self.commands.values())


def _kubernetes_ldflags(bundle: GoBundle, commit: str) -> list[str]:
    m = re.match(r"v(\d+)\.(\d+)\.", bundle.version)
    if not m:
        raise BinaryError(f"Kubernetes version {bundle.version!r} is not vMAJOR.MINOR.PATCH; pin a release tag.")
    major, minor = m.group(1), m.group(2)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    flags = ["-s", "-w"]
    # Both packages carry a version: component-base for the servers' /version, client-go's
    # for kubectl's client half. Stamping one only leaves v0.0.0-master in the other.
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={bundle.version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitCommit={commit}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={stamp}",
        ]
    return flags


def _etcd_ldflags(bundle: GoBundle, commit: str) -> list[str]:
    return ["-s", "-w", f"-X go.etcd.io/etcd/api/v3/version.GitSHA={commit[:12] or bundle.version}"]


def _kwok_ldflags(bundle: GoBundle, commit: str) -> list[str]:
    return ["-s", "-w", f"-X sigs.k8s.io/kwok/pkg/consts.Version={bundle.version}"]


def kubernetes_bundle(version: str = KUBERNETES_VERSION) -> GoBundle:
    return GoBundle(
        name="kubernetes",
        version=version,
        main_module="k8s.io/kubernetes",
        extra_modules=(),
        commands={
            "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
            "k8s.io/kubernetes/cmd/kubectl": "kubectl",
        },
        ldflags=_kubernetes_ldflags,
    )


def etcd_bundle(version: str = ETCD_VERSION) -> GoBundle:
    return GoBundle(
        name="etcd",
        version=version,
        main_module="go.etcd.io/etcd/server/v3",
        extra_modules=("go.etcd.io/etcd/etcdctl/v3",),
        commands={"go.etcd.io/etcd/server/v3": "etcd", "go.etcd.io/etcd/etcdctl/v3": "etcdctl"},
        ldflags=_etcd_ldflags,
    )


def kwok_bundle(version: str = KWOK_VERSION) -> GoBundle:
    return GoBundle(
        name="kwok",
        version=version,
        main_module="sigs.k8s.io/kwok",
        extra_modules=(),
        commands={"sigs.k8s.io/kwok/cmd/kwok": "kwok", "sigs.k8s.io/kwok/cmd/kwokctl": "kwokctl"},
        ldflags=_kwok_ldflags,
        data_dirs=("kustomize/stage",),
    )


def default_bundles() -> list[GoBundle]:
    return [kubernetes_bundle(), etcd_bundle(), kwok_bundle()]


@dataclass(frozen=True)
class BinarySet:
    """Resolved paths of every binary a local cluster needs."""

    paths: dict[str, Path]
    stage_dir: Path | None
    versions: dict[str, str]

    def __getitem__(self, name: str) -> Path:
        try:
            return self.paths[name]
        except KeyError:
            raise BinaryError(f"binary {name!r} is not part of the build; known: {sorted(self.paths)}") from None


def _override_dir() -> Path | None:
    value = os.environ.get("KUBEQUAKE_BIN_DIR")
    return Path(value) if value else None


def locate(bundles: list[GoBundle] | None = None) -> BinarySet:
    """Find built binaries without building; raise naming the command that builds them."""
    bundles = bundles or default_bundles()
    override = _override_dir()
    paths: dict[str, Path] = {}
    stage_dir: Path | None = None
    missing: list[str] = []
    for bundle in bundles:
        for name in bundle.binary_names():
            path = (override or bundle.bin_dir) / name
            if path.is_file() and os.access(path, os.X_OK):
                paths[name] = path
            else:
                missing.append(str(path))
        if bundle.data_dirs:
            # KWOK's stage definitions sit beside bin/: <home>/stages in the cache, and likewise
            # <KUBEQUAKE_BIN_DIR>/../stages for a directory laid out the same way.
            candidate = (override.parent if override else bundle.home) / "stages"
            if candidate.is_dir():
                stage_dir = candidate
    if missing:
        if override:
            raise BinaryError(
                f"missing binaries in KUBEQUAKE_BIN_DIR={override}: {', '.join(missing)}. Put your own builds "
                "there, or unset KUBEQUAKE_BIN_DIR to use the cache that `kubequake binaries` builds."
            )
        raise BinaryError(
            f"missing binaries in the binary cache: {', '.join(missing)}. "
            "Build them with `kubequake binaries` (needs Go 1.26+, takes a while the first time), "
            "or `make setup`."
        )
    return BinarySet(paths=paths, stage_dir=stage_dir, versions={b.name: b.version for b in bundles})


def ensure(bundles: list[GoBundle] | None = None, go: str = "go") -> BinarySet:
    """Build whatever is missing, then return every path."""
    bundles = bundles or default_bundles()
    if _override_dir() is None:
        for bundle in bundles:
            if not _complete(bundle):
                build(bundle, go=go)
    return locate(bundles)


def _complete(bundle: GoBundle) -> bool:
    if not all((bundle.bin_dir / n).is_file() for n in bundle.binary_names()):
        return False
    return not bundle.data_dirs or (bundle.home / "stages").is_dir()


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _go_env(go: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _run_logged(argv: list[str], cwd: Path, env: dict[str, str], logfile: Path, timeout: float, step: str) -> str:
    with open(logfile, "a") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=fh, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise BinaryError(
                f"{argv[0]!r} was not found while {step}. Install Go 1.26 or newer (e.g. `apt-get install golang` "
                "or the official toolchain) and put `go` on PATH."
            ) from None
        except subprocess.TimeoutExpired:
            raise BinaryError(f"{step} took longer than {timeout:.0f}s; see the log at {logfile}") from None
        fh.write(proc.stdout)
    if proc.returncode != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise BinaryError(f"{step} failed (exit {proc.returncode}); full log at {logfile}. Last lines:\n{tail}")
    return proc.stdout


def relative_replaces(go_mod: str) -> list[str]:
    """Module paths that a served go.mod replaces with a sibling directory of the same repo.

    etcd also "replaces" modules it forbids with a nonexistent directory; those are guards,
    not siblings, and are left out.
    """
    found: list[str] = []
    for line in go_mod.splitlines():
        m = _REL_REPLACE.match(line)
        if m and "FORBIDDEN" not in m.group(2):
            found.append(m.group(1))
    return found


def published_version(main_version: str, module: str, main_module: str) -> str:
    """The published version of a replaced sibling module.

    k8s.io staging modules are published as v0.MINOR.PATCH for Kubernetes v1.MINOR.PATCH;
    etcd's sibling modules share the release's own version.
    """
    if main_module == "k8s.io/kubernetes":
        return "v0." + main_version.split(".", 1)[1]
    return main_version


def wrapper_go_mod(bundle: GoBundle, served: dict[str, str]) -> str:
    """Render the wrapper module's go.mod from the served go.mod files."""
    main = served[bundle.main_module]
    go_m = _GO_LINE.search(main)
    lines = ["module kubequake.invalid/build/" + bundle.name, "", f"go {go_m.group(1) if go_m else '1.26.0'}"]
    godebug = _GODEBUG.search(main)
    if godebug:
        # The release's godebug default decides TLS and parsing behaviour: keep upstream's.
        lines.append(f"godebug {godebug.group(1).strip()}")
    lines += ["", "require ("]
    for mod in (bundle.main_module, *bundle.extra_modules):
        lines.append(f"\t{mod} {bundle.version}")
    lines.append(")")
    replaced: dict[str, str] = {}
    for text in served.values():
        for target in relative_replaces(text):
            if target in (bundle.main_module, *bundle.extra_modules):
                continue
            replaced[target] = published_version(bundle.version, target, bundle.main_module)
    if replaced:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in sorted(replaced.items())]
        lines.append(")")
    return "\n".join(lines) + "\n"


def build(bundle: GoBundle, go: str = "go") -> Path:
    """Build one bundle into the cache; return its bin directory."""
    home = bundle.home
    home.mkdir(parents=True, exist_ok=True)
    with _lock(home / ".lock"):
        if _complete(bundle):
            return bundle.bin_dir
        logfile = home / "build.log"
        logfile.write_text(f"kubequake build of {bundle.name} {bundle.version}\n")
        env = _go_env(go)
        log.info("building %s %s (log: %s)", bundle.name, bundle.version, logfile)
        src = home / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        served: dict[str, str] = {}
        commit = ""
        for mod in (bundle.main_module, *bundle.extra_modules):
            out = _run_logged(
                [go, "mod", "download", "-json", f"{mod}@{bundle.version}"],
                src,
                env,
                logfile,
                DOWNLOAD_TIMEOUT_S,
                f"downloading {mod}@{bundle.version}",
            )
            info = json.loads(out)
            served[mod] = Path(info["GoMod"]).read_text()
            if mod == bundle.main_module:
                commit = (info.get("Origin") or {}).get("Hash", "")
                for rel in bundle.data_dirs:
                    data = Path(info["Dir"]) / rel
                    if not data.is_dir():
                        raise BinaryError(f"{mod}@{bundle.version} has no {rel}; the pinned version may be wrong")
                    dest = home / "stages.tmp"
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(data, dest)
                    for p in dest.rglob("*"):
                        p.chmod(0o755 if p.is_dir() else 0o644)
        (src / "go.mod").write_text(wrapper_go_mod(bundle, served))
        out_dir = home / "bin.tmp"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir()
        argv = [
            go,
            "build",
            "-mod=mod",
            "-trimpath",
            "-tags",
            UPSTREAM_TAGS,
            "-ldflags",
            " ".join(bundle.ldflags(bundle, commit)),
            "-o",
            str(out_dir) + "/",
            *bundle.commands,
        ]
        _run_logged(argv, src, env, logfile, BUILD_TIMEOUT_S, f"go build of {bundle.name} {bundle.version}")
        for pkg, name in bundle.commands.items():
            produced = out_dir / _go_output_name(pkg)
            if produced.name != name:
                produced.rename(out_dir / name)
        shutil.rmtree(bundle.bin_dir, ignore_errors=True)
        out_dir.rename(bundle.bin_dir)
        if bundle.data_dirs:
            shutil.rmtree(home / "stages", ignore_errors=True)
            (home / "stages.tmp").rename(home / "stages")
        (home / "build.json").write_text(
            json.dumps({"version": bundle.version, "commit": commit, "tags": UPSTREAM_TAGS}, indent=2)
        )
        log.info("built %s %s into %s", bundle.name, bundle.version, bundle.bin_dir)
        return bundle.bin_dir


def _go_output_name(pkg: str) -> str:
    parts = pkg.split("/")
    # `go build` names a binary after the last element, skipping a major-version suffix.
    if re.fullmatch(r"v\d+", parts[-1]) and len(parts) > 1:
        return parts[-2]
    return parts[-1]
