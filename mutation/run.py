"""Mutation testing of the decision code with mutmut 3: `./dev mutate [GROUP...]` (docs/testing.md).

mutmut expects the code under `src/` of the directory it runs in; ours lives in three distributions
(core/src, airflow_provider/src, prefect_blocks/src), each tested in its own environment. So each environment
gets a staging directory under .venv/run/mutmut/ with `src/<package>` linked to the real package, tests/,
docs/ and examples/ linked, and a pyproject.toml naming the modules to mutate and the fast tests that cover
them.
mutmut copies that into its `mutants/` tree and, for each mutant, runs only the tests that called the
mutated function. Results stay cached there: a second run retests only what changed.

Usage (from ./dev, inside the environment the group needs):
    python mutation/run.py GROUP [--fresh] [--only GLOB...]   mutate one group (or some of its mutants)
    python mutation/run.py GROUP --changed        only the functions changed since the group was measured
    python mutation/run.py --list                 the groups, their modules and tests

mutation/measured.toml names, per group, the commit its score in docs/testing.md was measured at, and the
survivors judged equivalent there. `--changed` (what `./dev test` runs) mutates only the functions whose lines
differ from that commit, and fails on any survivor among them that is not listed as equivalent.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
STAGING = ROOT / ".venv" / "run" / "mutmut"
MEASURED = ROOT / "mutation" / "measured.toml"
SHARED = ("tests", "docs", "examples")  # what the tests read besides the package
TARGET = 90.0  # per cent of mutants killed, per group (issue 18)
# A test that hangs under a mutant fails after 60 s, not the suite's 120: the groups' tests take under 7 s.
PYTEST_ARGS = ("-p", "no:cacheprovider", "-q", "--timeout=60")
# A mutant that makes a wait spin or hang is stopped after MULTIPLIER x (its tests' time + CONSTANT seconds)
# of wall time; mutmut's default x15 let one hanging mutant hold a worker for many minutes.
TIMEOUT_MULTIPLIER, TIMEOUT_CONSTANT = 4.0, 10.0


@dataclass(frozen=True)
class Group:
    env: str  # the ./dev environment whose suite covers these modules
    src: str  # the distribution's src/ directory
    package: str
    modules: tuple[str, ...]  # file names in the package
    tests: tuple[str, ...]  # fast tests (fake clock or one reference server), no e2e


CORE = ("core/src", "runwatch")
GROUPS: dict[str, Group] = {
    "machine": Group(
        "core",
        *CORE,
        ("_machine.py", "_states.py"),
        ("tests/core/test_machine.py", "tests/core/test_model.py"),
    ),
    "policy": Group(
        "core", *CORE, ("_policy.py",), ("tests/core/test_policy_and_http.py", "tests/core/test_pacing.py")
    ),
    "pacing": Group(
        "core",
        *CORE,
        ("_watch.py", "_wait_strategy.py"),
        ("tests/core/test_engine.py", "tests/core/test_pacing.py", "tests/core/test_policy_and_http.py"),
    ),
    "hints": Group(
        "core",
        *CORE,
        ("_http.py",),  # Retry-After and RateLimit parsing, the origin pause, redirects, connection slots
        (
            "tests/core/test_policy_and_http.py",
            "tests/core/test_pacing.py",
            "tests/core/test_engine.py",
            "tests/core/test_hints.py",
        ),
    ),
    "outcome": Group(
        "core",
        *CORE,
        ("_waiter.py",),
        (
            "tests/core/test_engine.py",
            "tests/core/test_outcome.py",
            "tests/core/test_wait_loop.py",
            "tests/core/test_trace.py",
        ),
    ),
    "webhooks": Group(
        "core",
        *CORE,
        ("webhooks.py",),
        ("tests/core/test_webhooks.py", "tests/core/test_campaign_webhooks.py", "tests/core/test_inbox.py"),
    ),
    "profile": Group(
        "core",
        *CORE,
        ("_profile.py",),
        (
            "tests/core/test_profiles.py",
            "tests/core/test_profile_checks.py",
            "tests/core/test_vendor_profiles.py",  # one reference server; the real vendors' payload shapes
        ),
    ),
    "handoff": Group("core", *CORE, ("_handoff.py",), ("tests/core/test_handoff.py",)),
    "airflow": Group(
        "airflow",
        "airflow_provider/src",
        "runwatch_airflow",
        # Where a wait's result becomes success, a typed failure, a skip, a sensor timeout or a cancel.
        # operators/runwatch.py is left out: its own code (the start, its XCom, execute's branches) runs
        # only under a task runner, whose dag.test() takes 25 s or more here (docs/testing.md).
        ("exceptions.py", "_waiting.py", "triggers/runwatch.py", "sensors/runwatch.py"),
        (
            "tests/airflow/test_trigger.py",
            "tests/airflow/test_sensor.py",
            "tests/airflow/test_contracts.py",
            # One dag.test() (about 6 s): the link a real task instance pushes, for each way a wait ends.
            "tests/airflow/test_task_runs.py",
            # Its dag.test() takes tens of seconds; the functions it runs have faster tests above.
            "--deselect",
            "tests/airflow/test_contracts.py::test_reschedule_deadline_retries_and_the_remote_run",
        ),
    ),
    "prefect": Group(
        "prefect",
        "prefect_blocks/src",
        "prefect_runwatch",
        # Where a wait's result becomes a task's return, a raised outcome, a suspension or a resume input.
        ("_release.py", "tasks.py", "jobs.py", "watcher.py"),
        (
            "tests/prefect/test_tasks.py",
            "tests/prefect/test_jobs.py",
            "tests/prefect/test_watcher.py",
            "tests/prefect/test_contracts.py",
        ),
    ),
}


def stage(name: str, group: Group, fresh: bool) -> Path:
    """The staging directory of one group: src/<package> and tests/ linked, pyproject.toml written."""
    where = STAGING / name
    if fresh and where.exists():
        shutil.rmtree(where)
    (where / "src").mkdir(parents=True, exist_ok=True)
    links = {where / "src" / group.package: ROOT / group.src / group.package}
    links |= {where / name: ROOT / name for name in SHARED}
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    pytest_config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    config = {
        "source_paths": [f"src/{group.package}"],
        "also_copy": [name for name in SHARED if name != "tests"],  # tests/ is always copied
        "only_mutate": [f"src/{group.package}/{module}" for module in group.modules],
        "pytest_add_cli_args": list(PYTEST_ARGS),
        "pytest_add_cli_args_test_selection": list(group.tests),
        "timeout_constant": TIMEOUT_CONSTANT,
        "timeout_multiplier": TIMEOUT_MULTIPLIER,
    }
    (where / "pyproject.toml").write_text(
        _toml({"tool": {"mutmut": config, "pytest": {"ini_options": pytest_config}}})
    )
    return where


def _toml(data: dict[str, object], prefix: str = "") -> str:
    """Just enough TOML for the two tables above (strings, numbers, booleans, lists of strings)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, object]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{prefix}{key}", value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = ("\n".join(lines) + "\n") if lines else ""
    for name, table in tables:
        inner = _toml(table, f"{name}.")
        if any(not isinstance(v, dict) for v in table.values()):
            out += f"\n[{name}]\n"
        out += inner
    return out


def score(where: Path) -> tuple[int, int, list[str], dict[str, list[int]], int]:
    """(killed, run, survivors, [killed, run] by function, not run) from mutmut's results; a timeout counts
    as killed (the test noticed, and `confirm_timeouts` made sure). A mutant not run yet is neither."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=where,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    killed = run = unrun = 0
    survivors: list[str] = []
    functions: dict[str, list[int]] = {}
    for line in listing.splitlines():
        mutant, _, verdict = line.strip().rpartition(": ")
        if not mutant:
            continue
        if verdict == "not checked":
            unrun += 1
            continue
        counts = functions.setdefault(mutant.partition("__mutmut_")[0], [0, 0])
        run += 1
        counts[1] += 1
        if verdict in ("killed", "timeout", "caught by type check"):
            killed += 1
            counts[0] += 1
        else:
            survivors.append(f"{mutant}: {verdict}")
    return killed, run, survivors, functions, unrun


def confirm_timeouts(where: Path, env: dict[str, str], children: int) -> None:
    """Run each mutant that timed out again, alone, in a fresh pytest process; record what that says.

    mutmut runs a mutant's tests in a child forked from a process that has run the suite already, and a
    thread pool the parent made is dead there (tests/airflow/conftest.py mends the one seen), so a test that
    passes on its own can wait for ever. A timeout counts as killed, so each is confirmed where nothing ran
    first: passing is a survivor, failing a kill, and only a second timeout stays a timeout.
    """
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results"], cwd=where, capture_output=True, text=True, check=True
    ).stdout
    timed_out = [
        line.strip().rpartition(": ")[0] for line in listing.splitlines() if line.endswith(": timeout")
    ]
    mutants = where / "mutants"
    stats = json.loads((mutants / "mutmut-stats.json").read_text()) if timed_out else {}
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, ["src", env.get("PYTHONPATH")]))}

    def alone(mutant: str) -> int | None:
        """pytest's exit code for the mutant's tests in a fresh process; None if it timed out again."""
        tests = sorted(stats["tests_by_mangled_function_name"].get(mutant.partition("__mutmut_")[0], []))
        seconds = sum(stats["duration_by_test"].get(test, 0.0) for test in tests)
        try:
            return subprocess.run(
                [sys.executable, "-m", "pytest", "-x", *PYTEST_ARGS, *tests],
                cwd=mutants,
                env={**env, "MUTANT_UNDER_TEST": mutant},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=TIMEOUT_MULTIPLIER * (seconds + TIMEOUT_CONSTANT) + 30.0,  # and pytest's start
            ).returncode
        except subprocess.TimeoutExpired:
            return None

    with concurrent.futures.ThreadPoolExecutor(children) as pool:
        codes = dict(zip(timed_out, pool.map(alone, timed_out), strict=True))
    for mutant, code in codes.items():
        if code not in (0, 1):  # pytest's "passed" and "tests failed"; a second timeout or an error stays
            print(f"  timeout kept ({'again' if code is None else f'pytest exited {code}'}): {mutant}")
            continue
        meta = mutants / "src" / (mutant.rsplit(".", 1)[0].replace(".", "/") + ".py.meta")
        data = json.loads(meta.read_text())
        data["exit_code_by_key"][mutant] = code  # mutmut's survived (0) and killed (1)
        meta.write_text(json.dumps(data, indent=4))
        print(f"  timeout confirmed alone as {'survived' if code == 0 else 'killed'}: {mutant}")


def changed_functions(group: Group, since: str) -> set[str]:
    """mutmut's names (`runwatch._watch.xǁWatchǁask`) of the group's functions and methods whose lines differ
    between commit `since` and the working tree (a new module: all of them)."""
    names: set[str] = set()
    for module in group.modules:
        path = Path(group.src) / group.package / module
        diff = subprocess.run(
            ["git", "diff", "--unified=0", since, "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        lines: set[int] = set()
        for hunk in (line for line in diff.splitlines() if line.startswith("@@")):
            start, _, count = hunk.split("+")[1].split(" ")[0].partition(",")
            # A pure deletion (count 0) is reported at the line before it: count that line as changed.
            lines.update(range(int(start), int(start) + max(int(count or 1), 1)))
        dotted = f"{group.package}.{module.removesuffix('.py')}"
        for name, first, last in _functions(ast.parse((ROOT / path).read_text())):
            if lines.intersection(range(first, last + 1)):
                names.add(f"{dotted}.{name}")
    return names


def _functions(tree: ast.Module) -> list[tuple[str, int, int]]:
    """(mutmut's mangled name, first line, last line) of each module-level function and method."""
    found: list[tuple[str, int, int]] = []

    def add(node: ast.AST, prefix: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.append((f"{prefix}{node.name}", first, node.end_lineno or node.lineno))

    for node in tree.body:
        add(node, "x_")
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                add(member, f"xǁ{node.name}ǁ")
    return found


def check_changed(name: str, group: Group, where: Path, children: str) -> int:
    """Mutate the functions changed since the group's measured commit; 1 on an unlisted survivor."""
    measured = tomllib.loads(MEASURED.read_text()).get(name, {})
    since = measured.get("commit")
    if since is None:
        print(f"mutation {name}: no measured commit in {MEASURED.relative_to(ROOT)}", file=sys.stderr)
        return 2
    changed = changed_functions(group, since)
    if not changed:
        print(f"mutation {name}: no function changed since {since[:10]}")
        return 0
    started = time.monotonic()
    patterns = sorted(f"{function}__mutmut_*" for function in changed)
    with _shared_servers(group, int(children)) as env:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", children, *patterns],
            cwd=where,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        confirm_timeouts(where, env, int(children))
    _, _, survivors, functions, _ = score(where)
    killed = sum(functions[f][0] for f in changed if f in functions)
    total = sum(functions[f][1] for f in changed if f in functions)
    equivalent = set(measured.get("equivalent", []))
    unlisted = [
        line
        for line in survivors
        if (mutant := line.rpartition(": ")[0]).partition("__mutmut_")[0] in changed
        and mutant not in equivalent
    ]
    for line in unlisted:
        print(f"  survived  {line}")
    took = time.monotonic() - started
    print(
        f"mutation {name}: {len(changed)} functions changed since {since[:10]}: {killed}/{total} killed, "
        f"{len(unlisted)} survivors not listed as equivalent, in {took:.0f} s"
    )
    return 1 if unlisted else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("group", nargs="?", choices=sorted(GROUPS))
    parser.add_argument("--fresh", action="store_true", help="forget cached results of the group")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="GLOB",
        default=[],
        help="(re)test only the mutants whose names match, e.g. 'prefect_runwatch.tasks.*'",
    )
    parser.add_argument(
        "--changed", action="store_true", help="only the functions changed since the group's measured commit"
    )
    parser.add_argument("--show", action="store_true", help="print the change each survivor made")
    parser.add_argument("--progress", action="store_true", help="show mutmut's own progress display")
    parser.add_argument("--list", action="store_true", help="print the groups and exit")
    parser.add_argument("--names", action="store_true", help="print the group names, one a line (for ./dev)")
    parser.add_argument("--env-of", metavar="GROUP", help="print the environment a group runs in (for ./dev)")
    args = parser.parse_args()
    if args.names:
        print("\n".join(GROUPS))
        return 0
    if args.env_of is not None:
        if args.env_of not in GROUPS:
            return 2
        print(GROUPS[args.env_of].env)
        return 0
    if args.list or args.group is None:
        for name, group in GROUPS.items():
            print(f"{name:9} [{group.env}] {', '.join(group.modules)} <- {' '.join(group.tests)}")
        return 0
    group = GROUPS[args.group]
    if os.environ.get("RUNWATCH_ENV", group.env) != _family(group.env):
        print(
            f"mutation {args.group}: run it in .venv/{group.env} (./dev mutate {args.group})", file=sys.stderr
        )
        return 2
    where = stage(args.group, group, args.fresh)
    children = os.environ.get("RUNWATCH_MUTATE_CHILDREN", "2")  # the machine is shared: two by default
    if args.changed:
        return check_changed(args.group, group, where, children)
    started = time.monotonic()
    with _shared_servers(group, int(children)) as env:
        run = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", children, *args.only],
            cwd=where,
            env=env,
            stdout=None if args.progress else subprocess.DEVNULL,
        )
        confirm_timeouts(where, env, int(children))
    if run.returncode:  # its clean run of the tests failed, say: nothing was (re)tested
        print(f"mutation {args.group}: mutmut exited {run.returncode}; run with --progress to see why")
    killed, total, survivors, functions, unrun = score(where)
    for line in survivors:
        print(f"  survived  {line}")
        if args.show:
            name = line.rpartition(": ")[0]
            diff = subprocess.run(
                [sys.executable, "-m", "mutmut", "show", name], cwd=where, capture_output=True, text=True
            ).stdout
            print("".join(f"      {d}\n" for d in diff.splitlines() if d[:2] in ("- ", "+ ")), end="")
    for function, (done, made) in functions.items():
        if done < made:
            print(f"  {function}: {done}/{made} killed")
    percent = 100 * killed / total if total else 0.0
    took = time.monotonic() - started
    left = f"; {unrun} of {total + unrun} not run yet" if unrun else ""
    print(f"mutation {args.group}: {killed}/{total} killed ({percent:.1f} %){left} in {took:.0f} s")
    return run.returncode or (0 if percent >= TARGET and not unrun else 1)


@contextlib.contextmanager
def _shared_servers(group: Group, count: int) -> Iterator[dict[str, str]]:
    """The environment for mutmut: for the Prefect suite, `count` Prefect test servers for the whole run.

    mutmut runs each mutant's tests in a pytest session of its own, and each session would start its own
    server (about 8 s, more than the tests of most mutants). tests/prefect/prefect_harness.py gives each
    session one of these that no other session holds, so `count` is the number of mutants tested at once.
    """
    if _family(group.env) != "prefect":
        yield dict(os.environ)
        return
    code = "import sys, prefect_harness as h; print(h.start(), flush=True); sys.stdin.read(); h.stop()"
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT / "tests" / "prefect",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        urls = [server.stdout.readline().strip() if server.stdout else "" for server in servers]
        if not all(urls):
            raise SystemExit("mutation: a shared Prefect test server did not start")
        yield {**os.environ, "RUNWATCH_PREFECT_SHARED_API": " ".join(urls)}
    finally:
        for server in servers:
            if server.stdin:
                server.stdin.close()  # its harness stops the server and removes its home
        for server in servers:
            server.wait(timeout=60)


def _family(env: str) -> str:
    return env.removesuffix("-oldest")


if __name__ == "__main__":
    sys.exit(main())
