"""The `kubequake` command line: the only place that prints to the terminal.

Every HarnessError becomes one clear message on stderr and an exit code (2 = could not run),
never a traceback; `--debug` shows the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness import binaries, config, ctl
from harness import slo as slomod
from harness.errors import ClusterError, ConfigError, HarnessError
from harness.providers import registry
from harness.verdicts import Outcome

if TYPE_CHECKING:
    from harness.faults.heal import ClusterHeal
    from harness.gate import GateReport
    from harness.providers.base import Cluster
    from harness.providers.local import LocalCluster

log = logging.getLogger("kubequake")

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="kubequake.toml with cluster settings")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set control_planes=5 (repeatable)",
    )


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of lines, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more lines, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    # No abbreviations: `run` passes every option it does not know to pytest, and `--co` (pytest's
    # --collect-only) must not be taken for `--config`.
    p = argparse.ArgumentParser(
        prog="kubequake", description="Chaos and conformance harness for HA Kubernetes", allow_abbrev=False
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress at debug level")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the local HA cluster (reuses one that already runs)")
    _add_cluster_args(up)
    up.add_argument("--foreground", action="store_true", help="stay attached; Ctrl-C tears the cluster down")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for everything Ready")

    down = sub.add_parser("down", help="stop the cluster and remove its run directory (safe to repeat)")
    _add_cluster_args(down)

    st = sub.add_parser("status", help="show components, etcd members, leaders and workers")
    _add_cluster_args(st)
    st.add_argument("--json", action="store_true", help="machine-readable output (stable contract)")
    st.add_argument("--inventory", type=Path, default=None, help="status of an existing cluster (its inventory)")

    kc = sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    _add_cluster_args(kc)

    lg = sub.add_parser("logs", help="print a component's log")
    _add_cluster_args(lg)
    lg.add_argument("node")
    lg.add_argument("component")
    lg.add_argument("--tail", type=_non_negative, default=0, help="only the last N lines")

    sub.add_parser("binaries", help="build (once per machine) or verify the pinned binaries and print versions")

    wd = sub.add_parser(
        "watchdog", help="restart components of a detached cluster that exit by themselves (started by `up`)"
    )
    wd.add_argument("--run-dir", type=Path, required=True, help="the cluster's run directory")

    heal = sub.add_parser(
        "heal",
        help="clean up after killed runs: undo the faults they left in force (from the journal) and tear down "
        "clusters they had brought up; without options, every such cluster under the run root",
    )
    _add_cluster_args(heal)
    heal.add_argument(
        "--inventory", type=Path, default=None, help="heal an existing cluster described by this inventory"
    )

    run = sub.add_parser(
        "run",
        usage="kubequake run [--config F] [--set KEY=VALUE ...] [--alluredir D] [--junit F] [PYTEST ARGS ...]",
        description="Run the installed scenario suites (or the paths given) with pytest. The cluster is the one "
        "of that name that runs (as `kubequake up` left it; attached and left running), else one brought up "
        "with these settings and torn down after (--keep-cluster keeps it). Every other argument goes to "
        "pytest: -m MARKEXPR, -k EXPR, -x, --lf, paths, ...",
        help="run the scenario suites (or the given paths) on the cluster `up` started, or on one brought up "
        "with these settings and torn down after; other arguments go to pytest (-m, -k, -x, paths...)",
        allow_abbrev=False,
    )
    _add_cluster_args(run)
    run.add_argument(
        "--alluredir",
        type=Path,
        default=Path("reports/allure-results"),
        help="Allure results of this run, for `kubequake report` (default: reports/allure-results)",
    )
    run.add_argument("--junit", type=Path, default=Path("reports/junit.xml"), help="JUnit XML (default: %(default)s)")

    gt = sub.add_parser(
        "gate",
        help="pre-upgrade conformance gate on this cluster (brought up if not running); exit 0 pass, 1 fail, "
        "2 could not run",
    )
    _add_cluster_args(gt)
    gt.add_argument("--disruptive", action="store_true", help="also run the resilience suites (scenarios/)")
    gt.add_argument("--min-cert-days", type=float, default=30.0, help="fail certificates expiring sooner (days)")
    gt.add_argument("--junit", type=Path, default=Path("reports/gate-junit.xml"), help="JUnit XML output")
    gt.add_argument("--alluredir", type=Path, default=Path("reports/allure-results"), help="Allure results")
    gt.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for a cluster the gate starts")
    gt.add_argument(
        "--inventory", type=Path, default=None, help="gate an existing cluster described by this inventory (TOML)"
    )
    gt.add_argument(
        "--allow-disruptive",
        action="store_true",
        help="with --inventory and --disruptive: allow faults even if the inventory does not opt in",
    )

    inv = sub.add_parser(
        "inventory",
        help="write an existing-provider inventory describing this local cluster (nodes reached over SSH)",
    )
    _add_cluster_args(inv)
    inv.add_argument("--out", type=Path, required=True, help="inventory TOML to write")
    inv.add_argument("--ssh-host", default="127.0.0.1", help="SSH host of every node (this machine)")
    inv.add_argument("--ssh-port", type=int, default=22, help="SSH port")
    inv.add_argument("--ssh-user", default="root", help="SSH user (needs to run kubequake ctl)")
    inv.add_argument("--ssh-key", type=Path, default=None, help="private key file")
    inv.add_argument("--known-hosts", type=Path, default=None, help="known_hosts file (else host keys unchecked)")
    inv.add_argument("--allow-disruptive", action="store_true", help="set allow_disruptive = true")

    ct = sub.add_parser(
        "ctl",
        help="act on one component or node of a running cluster (start, stop, kill, freeze, thaw, running, "
        "ready, power-off, power-on, partition, heal-partition); for inventory command templates",
    )
    _add_cluster_args(ct)
    ct.add_argument("node", metavar="NODE", help="node name, e.g. cp1 (see `kubequake status`)")
    ct.add_argument("action", choices=ctl.ACTIONS, metavar="ACTION", help=", ".join(ctl.ACTIONS))
    ct.add_argument(
        "component",
        nargs="?",
        metavar="COMPONENT",
        help=f"required by {', '.join(ctl.COMPONENT_ACTIONS)}; not allowed for the node actions",
    )
    ct.add_argument("--peers", metavar="ADDR[,ADDR...]", help="partition, heal-partition: peer addresses")
    ct.add_argument("--one-way", action="store_true", help="partition: drop only what this node sends")
    ct.add_argument("--blackhole", action="store_true", help="power-off: the address also stops answering")
    ct.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="seconds to wait: start and power-on until ready (default 90), stop before SIGKILL (default 10)",
    )

    so = sub.add_parser(
        "slo", help="print the SLO table: every key, its value (defaults, or as --config/--set/--inventory set it)"
    )
    _add_cluster_args(so)
    so.add_argument("--inventory", type=Path, default=None, help="include an existing cluster's [slo]")
    so.add_argument("--json", action="store_true", help="machine-readable output")

    rp = sub.add_parser("report", help="generate the HTML report (Allure) and JUnit XML from Allure results")
    rp.add_argument("--results", type=Path, default=Path("reports/allure-results"), help="Allure results directory")
    rp.add_argument("--out", type=Path, default=Path("reports/allure-report"), help="HTML report directory")
    return p


def _cluster_config(args: argparse.Namespace) -> config.ClusterConfig:
    overrides = config.parse_set(args.sets)
    _objectives(args)  # slo.* keys ride on the same file and --set flags: refuse bad ones here too
    return config.load(args.config, overrides)


def _objectives(args: argparse.Namespace, inventory: Mapping[str, object] | None = None) -> slomod.Objectives:
    """The user's SLOs from --config's [slo] (or ./kubequake.toml), an inventory's [slo], then --set slo.*."""
    return slomod.load(args.config, config.parse_set(args.sets), inventory=inventory)


def _local_options(args: argparse.Namespace) -> registry.ProviderOptions:
    return registry.ProviderOptions("local", _cluster_config(args))


def _local(args: argparse.Namespace, *, must_exist: bool = True) -> LocalCluster:
    """The local cluster these settings name, with the settings it was started with (status, logs, ctl, down)."""
    from harness.providers.local import LocalCluster

    cfg = _cluster_config(args)
    if must_exist and not cfg.run_dir.is_dir():
        # Checked before the cluster object exists: constructing it creates the run directory.
        up = "kubequake up" + ("" if cfg.name == config.ClusterConfig().name else f" --set name={cfg.name}")
        raise ClusterError(f"no cluster {cfg.name!r} (nothing at {cfg.run_dir}); start it with `{up}`")
    cluster = registry.build(registry.ProviderOptions("local", cfg))
    # These commands act on the local provider's own processes, logs and files.
    assert isinstance(cluster, LocalCluster), cluster
    return cluster


def cmd_up(args: argparse.Namespace) -> int:
    options = _local_options(args)
    start = time.monotonic()
    # Not --foreground: a cluster it brings up outlives `up` (kept); one that already runs is reused.
    session = registry.open_session(options, keep=not args.foreground, timeout=args.timeout)
    took = time.monotonic() - start
    cluster = session.cluster
    if not args.foreground:
        try:
            _report_ready(cluster, took)
            _start_detached_watchdog(cluster)
        finally:
            session.close()  # lets go: the cluster stays up, now the user's
        print(
            "stop it with: kubequake down"
            + ("" if cluster.cfg.name == "kubequake" else f" --set name={cluster.cfg.name}")
        )
        return EXIT_OK
    # The guarded region starts right after the cluster is up: a Ctrl-C that lands while the lines
    # below are printed (a user reacting to "ready" at once) is the same orderly stop as one
    # during the wait, not an "interrupted" exit.
    try:
        _report_ready(cluster, took)
        if session.created:
            print("running in the foreground; Ctrl-C stops it")
        else:
            print("it was already running: Ctrl-C lets go of it and leaves it running")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("stopping..." if session.teardown else "leaving it running")
    finally:
        session.close()
    return EXIT_OK


def _report_ready(cluster: Cluster, took: float) -> None:
    cfg = cluster.cfg
    print(f"cluster {cfg.name!r} ready in {took:.1f}s: {cfg.control_planes} control planes, {cfg.workers} workers")
    print(f"API (through the LB): {cluster.lb_url()}")
    print(f"kubeconfig: {cluster.kubeconfig()}")


def _start_detached_watchdog(cluster: Cluster) -> None:
    """A detached cluster's kubelet: a process of its own that outlives `up` and dies with `down`.

    Its command line ends with the run directory, so `down` (and the next `up` after a crash)
    sweeps it away with the components; it also stops by itself once the directory is gone.
    """
    import subprocess

    from harness.providers.local import detached_watchdog_pid
    from harness.spawn import kubequake_command

    pidfile = cluster.run_dir / "watchdog.pid"
    if detached_watchdog_pid(cluster.run_dir) is not None:
        return  # `up` on a running cluster: its watchdog is already there
    with open(cluster.run_dir / "watchdog.log", "ab") as logf:
        proc = subprocess.Popen(
            [*kubequake_command(), "watchdog", "--run-dir", str(cluster.run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    pidfile.write_text(str(proc.pid))


def cmd_watchdog(args: argparse.Namespace) -> int:
    import signal
    import threading

    from harness.providers.watchdog import Watchdog

    run_dir = args.run_dir.resolve()
    args.config, args.sets = None, [f"name={run_dir.name}", f"run_root={run_dir.parent}"]
    watchdog = Watchdog(_local(args))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    log.info("watching %s", run_dir)
    while run_dir.exists() and not stop.wait(watchdog.interval_s):
        try:
            watchdog.tick()
        except Exception as exc:  # one failed round is logged; the next may succeed
            log.warning("watchdog round failed: %s", exc)
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    from harness.providers import sessions

    existed = _cluster_config(args).run_dir.exists()
    start = time.monotonic()
    # Even without a run directory, destroy() removes what is keyed by name (firewall rules, cgroups).
    cluster = _local(args, must_exist=False)
    cluster.destroy()
    # What killed runs recorded about this cluster is moot once it is gone: `heal` need not visit it.
    root = cluster.run_dir.parent
    for rec in sessions.for_cluster(sessions.read_all(root), "local", cluster.run_dir):
        if not rec.alive():
            sessions.remove(rec)
    if existed:
        print(f"cluster {cluster.cfg.name!r} stopped and removed in {time.monotonic() - start:.1f}s")
    else:
        print(f"no cluster {cluster.cfg.name!r} to stop")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from harness.status import ClusterStatus, collect

    st: ClusterStatus
    if args.inventory is not None:
        # Attaching runs the wrong-cluster check first; the session detaches at its end.
        options = registry.ProviderOptions("existing", inventory=args.inventory)
        with registry.open_session(options, registry.Lifecycle.ATTACH) as session:
            st = collect(session.cluster)
    else:
        cfg = _cluster_config(args)
        cluster = _local(args) if cfg.run_dir.is_dir() else None
        if cluster is None or not cluster.running():
            if args.json:
                print(json.dumps({"name": cfg.name, "running": False}))
            else:
                print(f"cluster {cfg.name!r} is not running; start it with `kubequake up`")
            return EXIT_FAIL
        st = collect(cluster)
    if args.json:
        data = st.to_dict()
        data["running"] = True
        print(json.dumps(data, indent=2))
        return EXIT_OK if st.healthy else EXIT_FAIL
    print(f"cluster {st.name} ({st.provider}) {'HEALTHY' if st.healthy else 'DEGRADED'}")
    for n in st.nodes:
        comps = ", ".join(f"{c}={s.state}" for c, s in n.components.items())
        print(f"  {n.name:8} {n.role:14} {n.address:14} {comps}")
    print(f"etcd: quorum={'yes' if st.etcd.quorum else 'NO'} leader={st.etcd.leader}")
    for m in st.etcd.members:
        print(
            f"  {m.name:8} healthy={m.healthy!s:5} leader={m.leader!s:5} term={m.raft_term} index={m.raft_index}"
            + (f" error={m.error}" if m.error else "")
        )
    print("apiservers: " + ", ".join(f"{a.node}={'ready' if a.ready else 'NOT READY'}" for a in st.apiservers))
    print(f"load balancer {st.load_balancer.address}: {'ready' if st.load_balancer.ready else 'NOT READY'}")
    print("leaders: " + ", ".join(f"{k}={v}" for k, v in st.leaders.items()))
    print(f"workers: {sum(w.ready for w in st.workers)}/{len(st.workers)} Ready")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in st.versions.items()))
    return EXIT_OK if st.healthy else EXIT_FAIL


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    cluster = _local(args)
    path = cluster.kubeconfig()
    if not path.is_file():
        raise ClusterError(f"no kubeconfig at {path}: the cluster is not running; start it with `kubequake up`")
    print(path)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from harness.providers.base import Component

    cluster = _local(args)
    node = cluster.node(args.node)
    try:
        component = Component(args.component)
    except ValueError:
        raise ClusterError(
            f"unknown component {args.component!r}; {node.name} runs {', '.join(map(str, node.components()))}"
        ) from None
    if component not in node.components():
        raise ClusterError(f"{node.name} does not run {component}; it runs {', '.join(map(str, node.components()))}")
    path = cluster.log_path(node.name, component)
    if not path.is_file():
        raise ClusterError(f"no log at {path}: {node.name}/{component} has not run in this cluster")
    lines = path.read_text(errors="replace").splitlines()
    sys.stdout.write("\n".join(lines[-args.tail :] if args.tail else lines) + "\n")
    return EXIT_OK


def cmd_binaries(args: argparse.Namespace) -> int:
    import subprocess

    bins = binaries.ensure()
    for name, path in sorted(bins.paths.items()):
        flag = {
            "etcd": "--version",
            "etcdctl": "version",
            "kubectl": "version --client",
            "kwok": "--version",
            "kwokctl": "--version",
        }.get(name, "--version")
        out = subprocess.run([str(path), *flag.split()], capture_output=True, text=True, timeout=30, check=False)
        first = (out.stdout or out.stderr).strip().splitlines()[:1]
        print(f"{name:24} {first[0] if first else '?':40} {path}")
    return EXIT_OK


def run_pytest_args(args: argparse.Namespace, rest: list[str], cwd: Path | None = None) -> list[str]:
    """pytest's command line for `kubequake run`: shipped settings, reports, cluster settings, then the user's.

    The user's pytest arguments come last, so an option given there (--junitxml, -p ...) wins.
    With no path among them pytest runs the installed scenario suites (harness/suites.py).
    """
    from harness import suites

    plugin_args = ["--kq-config", str(args.config)] if args.config else []
    for s in args.sets:
        plugin_args += ["--kq-set", s]
    user = rest[1:] if rest[:1] == ["--"] else rest
    return [
        *suites.pytest_base_args(cwd=cwd),
        *suites.report_args(args.alluredir),
        *plugin_args,
        *user,
    ]


def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    import pytest

    cfg = _cluster_config(args)  # a bad setting is refused here, with the key and what is allowed
    log.info("running scenarios on cluster %s", cfg.name)
    from harness import suites

    code = int(pytest.main(run_pytest_args(args, rest)))
    if any(args.alluredir.glob("*-result.json")):
        suites.write_junit(args.alluredir, args.junit)
        print(f"Allure results: {args.alluredir}; JUnit XML: {args.junit}")
        report = "kubequake report" + (
            "" if args.alluredir == Path("reports/allure-results") else f" --results {args.alluredir}"
        )
        print(f"HTML report: {report}")
    return code


def cmd_gate(args: argparse.Namespace) -> int:
    from harness import gate

    if not args.min_cert_days > 0:
        raise ConfigError(f"--min-cert-days {args.min_cert_days:g}: give a number of days above 0")
    if args.inventory is not None:
        return _gate_existing(args)
    if args.allow_disruptive:
        raise ConfigError("--allow-disruptive applies to an existing cluster: give --inventory FILE with it")
    cfg = _cluster_config(args)

    def announce(cluster: Cluster) -> None:
        print(f"cluster {cfg.name!r} is not running: bringing it up for the gate (torn down after)")

    # A cluster that runs is checked as it runs and left running; else the gate brings one up and tears it down.
    with registry.open_session(_local_options(args), timeout=args.timeout, on_create=announce) as session:
        cluster = session.cluster
        if session.created:
            origin = "brought up for the gate, torn down after"
        else:
            origin = "reused the running cluster, left running"
            print(f"cluster {cfg.name!r} is running: the gate checks it as it runs (with its own settings)")
        opts = gate.GateOptions(min_cert_days=args.min_cert_days, objectives=_objectives(args))
        rep = gate.run_gate(cluster, opts, origin)
        if args.disruptive:
            plugin_args = ["--kq-config", str(args.config)] if args.config else []
            for k, v in config.flatten(cluster.cfg.to_dict()).items():
                plugin_args += ["--kq-set", f"{k}={v}"]
            # The user's SLOs judge the suites as they judged the checks above.
            plugin_args += [a for s in args.sets if s.strip().startswith("slo.") for a in ("--kq-set", s)]
            _gate_suites(rep, plugin_args, args.alluredir)
    return _gate_report(args, rep, f"cluster {cfg.name!r}: {origin}")


def _gate_existing(args: argparse.Namespace) -> int:
    from harness import gate
    from harness.providers.existing import load_inventory

    if args.sets or args.config:
        raise ConfigError("--set/--config describe a local cluster; an existing cluster's settings go in its inventory")
    inv = load_inventory(args.inventory)
    allow = True if args.allow_disruptive else None
    options = registry.ProviderOptions("existing", inventory=args.inventory, allow_disruptive=allow)
    origin = f"existing cluster from {args.inventory}, attached (never torn down)"
    with registry.open_session(options, registry.Lifecycle.ATTACH) as session:
        print(f"attached to existing cluster {inv.cluster!r}: the gate checks it as it runs")
        opts = gate.GateOptions(min_cert_days=args.min_cert_days, objectives=_objectives(args, inv.slo))
        rep = gate.run_gate(session.cluster, opts, origin)
        if args.disruptive:
            if not (args.allow_disruptive or inv.allow_disruptive):
                raise ConfigError(
                    f"--disruptive on existing cluster {inv.cluster!r}, but its inventory {args.inventory} does not "
                    "set allow_disruptive = true; set it (or pass --allow-disruptive) once the cluster's owners agree"
                )
            plugin_args = ["--provider", "existing", "--inventory", str(args.inventory)]
            plugin_args += ["--allow-disruptive"] if args.allow_disruptive else []
            _gate_suites(rep, plugin_args, args.alluredir)
    return _gate_report(args, rep, f"cluster {inv.cluster!r}: {origin}")


def _gate_suites(rep: GateReport, plugin_args: list[str], alluredir: Path) -> None:
    """The resilience suites (scenarios/) as one more gate outcome."""
    from harness import gate, gate_suite

    suites = gate_suite.run_resilience_suites(plugin_args, alluredir)
    rep.outcomes.append(gate.CheckOutcome("resilience", suites.verdict, suites.seconds))
    rep.incomplete += [suites.incomplete] if suites.incomplete else []


def _gate_report(args: argparse.Namespace, rep: GateReport, where: str) -> int:
    from harness import gate, gate_suite

    junit = gate.write_junit(rep, args.junit)
    if gate_suite.write_allure_results(rep.outcomes, args.alluredir) not in (EXIT_OK, EXIT_FAIL):
        rep.incomplete.append(f"could not write the Allure results into {args.alluredir}")
    print(gate.verdict_table(rep.outcomes))
    print(where)
    print(f"JUnit XML: {junit}; Allure results: {args.alluredir}")
    for what in rep.incomplete:
        print(f"INCOMPLETE: {what}")
    word = {EXIT_OK: "PASSED", EXIT_FAIL: "FAILED"}.get(rep.exit_code, "COULD NOT COMPLETE")
    counts = {o: sum(1 for c in rep.outcomes if c.outcome is o) for o in Outcome}
    words = {
        Outcome.PASS: "passed",
        Outcome.FAIL: "failed",
        Outcome.INCONCLUSIVE: "inconclusive",
        Outcome.ERROR: "error",
    }
    print(f"gate {word}: " + ", ".join(f"{n} {words[o]}" for o, n in counts.items()))
    return rep.exit_code


def cmd_heal(args: argparse.Namespace) -> int:
    from harness.faults import heal

    overrides = config.parse_set(args.sets)
    if args.inventory is not None:
        if args.sets or args.config:
            raise ConfigError("--set/--config describe a local cluster; give either them or --inventory")
        # Undo is never refused by the guards (start, thaw, heal-partition, power-on), so no
        # opt-in is needed to clean up after a crashed run.
        results = [heal.heal_target(registry.ProviderOptions("existing", inventory=args.inventory))]
    elif args.config is not None or set(overrides) - {"run_root"}:
        results = [heal.heal_target(_local_options(args))]
    else:
        root = _cluster_config(args).run_dir.parent
        results = heal.heal_leftovers(root)
        if not results:
            print(f"no cluster left behind by an ended run under {root}: nothing to heal")
            return EXIT_OK
    for r in results:
        _print_heal(r)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL


def _print_heal(r: ClusterHeal) -> None:
    for rec in r.left_by:
        print(
            f"cluster {r.name!r} ({r.provider}): left by `{rec.command_line}` (pid {rec.pid}, ended), "
            + ("which had brought it up" if rec.created else "which had attached to it")
        )
    for rec in r.in_use_by:
        print(f"cluster {r.name!r}: still in use by `{rec.command_line}` (pid {rec.pid})")
    if r.skipped:
        print(r.skipped)
        return
    if r.missing:
        print(f"no cluster {r.name!r}: nothing to heal")
        return
    if r.torn_down:
        for what in r.removed_with_cluster:
            print(f"removed with the cluster: {what}")
        print(f"torn down: cluster {r.name!r} (its run had brought it up and would have torn it down)")
        return
    if r.error:
        print(f"FAILED: {r.error}")
    if not r.outcomes and not r.error:
        print("the fault journal lists no fault in force")
    for o in r.outcomes:
        print(f"{'healed' if o.healed else 'FAILED'}: {o.description}" + (f" ({o.error})" if o.error else ""))


def cmd_ctl(args: argparse.Namespace) -> int:
    # The command line is checked before the cluster is attached: a malformed inventory template
    # fails the same way whether or not the cluster runs.
    request = ctl.build_request(
        args.node,
        args.action,
        args.component,
        peers=args.peers,
        one_way=args.one_way,
        blackhole=args.blackhole,
        timeout=args.timeout,
    )
    # Called from command templates (over SSH), where success means silence: progress logged at
    # INFO by the modules underneath (PKI reuse on start) is shown only with --verbose. Restored
    # after, since main() may run inside another program (the unit tests) that keeps its logging.
    root = logging.getLogger()
    level = root.level
    if not args.verbose:
        root.setLevel(max(level, logging.WARNING))
    try:
        result = ctl.execute(_local(args), request)
    finally:
        root.setLevel(level)
    if result.output is not None:
        print(result.output)
    return EXIT_OK if result.ok else EXIT_FAIL


def cmd_inventory(args: argparse.Namespace) -> int:
    from harness.providers.local_inventory import SSHAccess, inventory_for, to_toml

    if not 1 <= args.ssh_port <= 65535:
        raise ConfigError(f"--ssh-port {args.ssh_port} is not a TCP port (1-65535)")
    for flag, path in (("--ssh-key", args.ssh_key), ("--known-hosts", args.known_hosts)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag} {path} does not exist; give an existing file")
    cluster = _local(args)
    if not cluster.running():
        raise ClusterError(f"cluster {cluster.cfg.name!r} is not running; start it with `kubequake up` first")
    access = SSHAccess(
        host=args.ssh_host,
        port=args.ssh_port,
        user=args.ssh_user,
        key=args.ssh_key.resolve() if args.ssh_key else None,
        known_hosts=args.known_hosts.resolve() if args.known_hosts else None,
    )
    text = to_toml(inventory_for(cluster, access, allow_disruptive=args.allow_disruptive))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"inventory: {args.out}")
    print(f"run the suites through it: pytest scenarios --provider existing --inventory {args.out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.generate import generate

    rep = generate(args.results, args.out)
    print(f"report (open in a browser): {rep.single_file or rep.index}")
    print(f"report for CI or `allure open`: {rep.html_dir}")
    print(f"JUnit XML: {rep.junit}")
    print(
        f"{rep.tests} tests" + (f", trends carried from {rep.history_files} history files" if rep.history_files else "")
    )
    return EXIT_OK


def cmd_slo(args: argparse.Namespace) -> int:
    inventory: Mapping[str, object] | None = None
    if args.inventory is not None:
        from harness.providers.existing import load_inventory

        inventory = load_inventory(args.inventory).slo
    rows = slomod.describe(_objectives(args, inventory))
    if args.json:
        print(json.dumps([{"key": k, "value": float(v), "meaning": m} for k, v, m in rows], indent=2))
        return EXIT_OK
    width = max(len(k) for k, _, _ in rows)
    for key, value, meaning in rows:
        print(f"{key:{width}}  {value:>8}  {meaning}")
    return EXIT_OK


COMMANDS = {
    "slo": cmd_slo,
    "heal": cmd_heal,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "kubeconfig": cmd_kubeconfig,
    "logs": cmd_logs,
    "binaries": cmd_binaries,
    "report": cmd_report,
    "gate": cmd_gate,
    "ctl": cmd_ctl,
    "inventory": cmd_inventory,
    "watchdog": cmd_watchdog,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.command == "run":
            return cmd_run(args, rest)
        return COMMANDS[args.command](args)
    except HarnessError as exc:
        if args.debug:
            raise
        print(f"kubequake {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"kubequake {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
