#!/usr/bin/env python3
"""dynload against glibc's loader and the dlopen-rs crate: run, compare, report.

    python3 scripts/bench.py            # everything (a few minutes)
    python3 scripts/bench.py --quick    # short criterion and paired runs, 3 runs, callgrind on one case
    python3 scripts/bench.py --report-only   # redo ratios, targets, chart and README from bench/results.json

What is measured, each loader loading its own copy of every fixture. dynload
runs in two configurations: linked into the measuring program and called
directly (its Rust API, "dynload"), and preloaded into an ordinary program
as `dynload run` does (its C ABI, "dynload (LD_PRELOAD)"; not for
criterion):

1. in-process cases: `cargo bench -p dynload-bench --bench paired`, three
   processes, for the ratios dynload/glibc (pairs of short batches, each
   pair's two figures measured within milliseconds of each other), and
   criterion (`--bench loader`, then `--bench dlopen_rs`) for each loader's
   median time, dlopen-rs's among them.
2. first loads: `first-load` (dynload linked), `first-load-glibc` (glibc,
   and dynload preloaded) and `first-load-dlopen-rs`, in a fresh process
   per run, for big system libraries in both binding modes, and for one
   more small object after a bigger one; loaders are interleaved run by
   run, so that noise hits them alike, after one unrecorded round that
   warms the page cache.
3. instructions: callgrind's count (Ir) of the `measured_load` call.
4. memory: what one more object adds to VmRSS, mappings and the heap.
5. Python: `python -c 'import <extension modules>'`, plain and under
   `dynload run`, for pyenv's CPython (shared libpython) and Debian's.

Writes bench/results.json (every raw figure, the ratios to glibc, the targets
and whether each is met), bench/ratios.svg, and the README section between
`<!-- bench:begin -->` and `<!-- bench:end -->`.
"""

import argparse
import datetime
import html
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
RELEASE = TARGET / "release"
FIXTURES = TARGET / "bench-fixtures"
CRITERION = TARGET / "criterion"
OUT = ROOT / "bench"
RESULTS = OUT / "results.json"
CHART = OUT / "ratios.svg"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

SYSTEM_LIBS = Path("/usr/lib/x86_64-linux-gnu")
LIBDYNLOAD = RELEASE / "libdynload.so"
PRELOAD = "dynload-preload"
LOADERS = ("glibc", "dynload", PRELOAD, "dlopen-rs")
CRITERION_LOADERS = ("glibc", "dynload", "dlopen-rs")
# The two configurations of dynload, each held to the targets.
CONFIGS = ("dynload", PRELOAD)
LABELS = {PRELOAD: "dynload (LD_PRELOAD)"}
FIXTURE_PREFIX = {"glibc": "g_", "dynload": "d_", PRELOAD: "d_", "dlopen-rs": "r_"}
FIXTURE_NAMES = ("tiny", "many", "reloc", "relocdep")
GROUPS = (
    "open_close_tiny", "reopen_refcount", "reopen_noload", "dlsym_hit", "dlsym_miss",
    "dlsym_default_hit", "dlsym_default_miss", "dlvsym_default", "dladdr", "relocations_now",
    "relocations_lazy", "plt_first_call", "plt_steady_call", "tls_get_addr",
)
BENCHES = ("loader", "dlopen_rs")
# Processes of the paired bench: the median of their ratios is the ratio.
PAIRED_RUNS = 3
QUICK_CRITERION = ["--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10"]
BIG_LIBS = ("libLLVM-15.so.1", "libz3.so.4", "libcrypto.so.3")
MODES = ("now", "lazy")
# Resident memory is judged by its minimum (see `memory_summary`): with 9
# runs, one loader's luckiest placement decided it (glibc's `many`: 232 KiB
# once, 248 to 328 otherwise, against dynload's 244 to 308).
MEMORY_RUNS = 32
# Where the heap's top sits in its page decides whether the last few hundred
# bytes a load allocates take one more page: at one layout, libz3's 944 bytes
# an object more than glibc's showed as a whole page over its three objects,
# or none, by the bytes allocated before it. Each memory run moves the top by
# the next of these (`FIRST_LOAD_HEAP_OFFSET`), and the private figure is the
# mean over the runs: what the bytes cost in pages, averaged over where they
# land.
HEAP_OFFSETS = tuple(range(0, 4096, 256))
PYTHON_MODULES = (
    "_decimal _ssl _hashlib _sqlite3 _ctypes _json _pickle _datetime array math _socket select "
    "zlib _bz2 _lzma pyexpat _elementtree unicodedata _struct _random _bisect _heapq _csv "
    "_multibytecodec _asyncio _queue binascii"
).split()
INTERPRETERS = ("python3", "/usr/bin/python3.11")
KINDS = {
    "criterion": "in-process operations (median of paired batches)",
    "first_load": "first load in a fresh process (median time)",
    "instructions": "instructions of the load (callgrind Ir)",
    "python": "python -c 'import ...' (whole process)",
}


@dataclass(frozen=True)
class Load:
    """One `first-load` invocation: `object` (a system library or a fixture
    name) loaded in `mode`, after `warm` when there is one."""

    object: str
    mode: str = "now"
    warm: str | None = None

    @property
    def name(self):
        after = f" (after {self.warm})" if self.warm else ""
        return f"{self.object}{after} {self.mode}"


BIG_LOADS = tuple(Load(lib, mode) for lib in BIG_LIBS for mode in MODES)
ONE_MORE_OBJECT = Load("tiny", "now", "many")
# The 4,000-relocation fixture once, its dependency already loaded: the
# criterion case `relocations_*` as an instruction count, which the
# machine's load does not move.
RELOCATIONS = tuple(Load("reloc", mode, "relocdep") for mode in MODES)
# Copies of `tiny` loaded one after another: per object, the figures no
# longer depend on which pages of the loader's own code the first touched.
TINY_COPIES = 50
COPIES = f"tiny x{TINY_COPIES}"
# Passed to the loaders as bare names, for them to search the library path:
# loaded first, such a name leaves the one-time costs of that search (reading
# /etc/ld.so.cache) out of the next object's figures.
SEARCHED = ("libz.so.1", "libstdc++.so.6")
# libz3 twice: with its dependencies (libstdc++, and libm, which glibc loads
# for dynload too), and alone, after libstdc++ brought them.
MEMORY_LOADS = (Load(COPIES, "now", "many"), Load("many", "now", "tiny"), Load("libz3.so.4", "now", "libz.so.1"),
                Load("libz3.so.4", "now", "libstdc++.so.6"))


@dataclass(frozen=True)
class Target:
    """A limit on dynload/glibc for one case; met when the ratio is at most
    `limit * (1 + tolerance)`."""

    kind: str
    case: str
    limit: float
    tolerance: float = 0.0
    stretch: float | None = None

    def text(self):
        tol = f" (±{self.tolerance:.0%})" if self.tolerance else ""
        stretch = f" (stretch {self.stretch:g})" if self.stretch else ""
        return f"≤ {self.limit:g}{tol}{stretch}"


TARGETS = (
    Target("criterion", "dlsym_hit", 0.5),
    Target("criterion", "dlsym_miss", 0.5),
    Target("criterion", "dladdr", 0.05),
    Target("criterion", "open_close_tiny", 0.7),
    Target("criterion", "reopen_refcount", 1.0),
    Target("criterion", "relocations_now", 0.6),
    Target("criterion", "relocations_lazy", 0.6),
    Target("criterion", "plt_steady_call", 1.0, tolerance=0.03),
    Target("first_load", "libLLVM-15.so.1 now", 0.7, stretch=0.5),
)
MEMORY_LIMIT_KIB = 1.0


class Failed(Exception):
    """A measurement that could not be made; the message says why (for a
    loader, its own error text)."""


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- machine

def command_output(argv):
    """First line of a command's output, or None when it cannot run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    except OSError:
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None


def cpu_model():
    """lscpu's model name, else /proc/cpuinfo's."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = Path("/proc/cpuinfo").read_text()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    return "unknown"


def describe_machine():
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "glibc": command_output(["ldd", "--version"]) or command_output(["getconf", "GNU_LIBC_VERSION"]),
        "rustc": command_output(["rustc", "--version"]),
        "commit": command_output(["git", "rev-parse", "--short", "HEAD"]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(m):
    return f"{m['cpu']}, {m['cpus']} CPUs; Linux {m['kernel']}; {m['glibc']}; {m['rustc']}"


# ---------------------------------------------------------------- building, criterion

def build():
    """The measuring programs and `dynload run` must match the sources."""
    for argv in (["cargo", "build", "--release", "-p", "dynload-bench", "--examples"],
                 ["cargo", "build", "--release", "-p", "dynload-cli", "-p", "dynload-capi"]):
        log("$ " + " ".join(argv))
        if subprocess.run(argv, cwd=ROOT).returncode != 0:
            sys.exit("bench.py: the build failed")


def run_criterion(quick, rounds):
    """Both benches, from a clean target/criterion so that no stale result is
    reported. The loader bench (glibc and dynload, each case's two loaders
    one after the other) runs `rounds` times; each time is the median of its
    rounds' medians, and each ratio the median of the rounds' ratios (see
    `comparisons`): this machine's speed moves over minutes, and one
    round's ratios had moved by a quarter from one run to the next. A
    bench that fails (dlopen_rs may not exist yet) is recorded with the end
    of its output, and whatever it wrote is still read."""
    status, taken = {}, []
    for bench in BENCHES:
        for _ in range(rounds if bench == "loader" else 1):
            shutil.rmtree(CRITERION, ignore_errors=True)
            argv = ["cargo", "bench", "-p", "dynload-bench", "--bench", bench, "--", "--noplot"]
            argv += QUICK_CRITERION if quick else []
            log("$ " + " ".join(argv))
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
            failed = proc.returncode != 0
            status[bench] = "failed: " + tail(proc.stderr) if failed else status.get(bench, "ok")
            log(f"  {bench}: {status[bench]}")
            taken.append(read_criterion())
    return {"benches": status, "rounds": rounds, "cases": merge_rounds(taken)}


def run_paired(quick, runs):
    """The `paired` bench `runs` times, each run a process of its own: the
    ratios of one case move by a few hundredths from process to process
    (where the kernel placed code and data), so each case's ratio is the
    median of the runs' ratios, and each loader's time the median of the
    runs' medians. A failed run is recorded with the end of its output."""
    argv = ["cargo", "bench", "-p", "dynload-bench", "--bench", "paired", "--", *(["--quick"] if quick else [])]
    taken, status = [], "ok"
    for _ in range(runs):
        log("$ " + " ".join(argv))
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            status = "failed: " + tail(proc.stderr)
            log(f"  paired: {status}")
            break
        lines = (line for line in proc.stdout.splitlines() if line.startswith("{"))
        taken.append({case["case"]: case for case in map(json.loads, lines)})
        log("  paired: ok")
    cases = {}
    for reading in taken:
        for case, figures in reading.items():
            cases.setdefault(case, []).append(figures)
    return {"status": status, "runs": len(taken), "cases": {
        case: {"glibc_ns": statistics.median(r["glibc_ns"] for r in runs_),
               "dynload_ns": statistics.median(r["dynload_ns"] for r in runs_),
               "ratio": statistics.median(r["ratio"] for r in runs_),
               "runs": runs_}
        for case, runs_ in cases.items()}}


def merge_rounds(taken):
    """{group: {loader: figures}} from the rounds' readings: the median of
    the rounds' medians, with each reading's median kept at its index
    (None where that reading has no figure, as when a round failed), so
    that two loaders' figures of one round stay side by side."""
    merged = {}
    for i, reading in enumerate(taken):
        for group, loaders in reading.items():
            for loader, figures in loaders.items():
                merged.setdefault(group, {}).setdefault(loader, [None] * len(taken))[i] = figures
    for group, loaders in merged.items():
        for loader, rounds in loaders.items():
            present = [r for r in rounds if r is not None]
            loaders[loader] = {
                "median_ns": statistics.median(r["median_ns"] for r in present),
                "rounds_ns": [r and r["median_ns"] for r in rounds],
                "lower_ns": min(r["lower_ns"] for r in present),
                "upper_ns": max(r["upper_ns"] for r in present),
            }
    return merged


def tail(text):
    """The gist of a failure's output: a panic and its message, else the
    first error, else the last lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "panicked at" in line:
            return " ".join(lines[i:i + 2])
    errors = [line for line in lines if line.startswith("error")]
    return errors[0] if errors else " / ".join(lines[-4:])


def read_criterion():
    """{group: {loader: median and its confidence interval, in ns}}, groups
    in the order of GROUPS, then any new ones."""
    cases = {}
    found = sorted(CRITERION.glob("*/*/new/estimates.json"))
    order = {g: i for i, g in enumerate(GROUPS)}
    for path in sorted(found, key=lambda p: (order.get(p.parts[-4], len(order)), p.parts[-4])):
        median = json.loads(path.read_text())["median"]
        interval = median["confidence_interval"]
        cases.setdefault(path.parts[-4], {})[path.parts[-3]] = {
            "median_ns": median["point_estimate"],
            "lower_ns": interval["lower_bound"],
            "upper_ns": interval["upper_bound"],
        }
    return cases


# ---------------------------------------------------------------- first-load

def existing(path):
    """A missing file fails the measurement with its name; for LD_PRELOAD,
    glibc would only warn, and run the program without it."""
    if not path.exists():
        raise Failed(f"{path} does not exist")
    return str(path)


def object_path(loader, name):
    """A fixture name means this loader's own copy (COPIES: a directory of
    copies of it, made here); a SEARCHED name is left to the loader to find;
    anything else is a system library."""
    if name in SEARCHED:
        return name
    if name == COPIES:
        return existing(tiny_copies(loader))
    if name in FIXTURE_NAMES:
        return existing(FIXTURES / f"lib{FIXTURE_PREFIX[loader]}{name}.so")
    return existing(SYSTEM_LIBS / name)


def tiny_copies(loader):
    """A directory of TINY_COPIES copies of this loader's `tiny`, under
    distinct file names (each is a distinct object to every loader)."""
    prefix = FIXTURE_PREFIX[loader]
    tiny = FIXTURES / f"lib{prefix}tiny.so"
    folder = FIXTURES / f"copies-{prefix}tiny"
    if tiny.exists():
        folder.mkdir(exist_ok=True)
        for i in range(TINY_COPIES):
            shutil.copyfile(tiny, folder / f"lib{prefix}tiny-{i:02}.so")
    return folder


def first_load_argv(loader, load):
    """Preloaded, dynload is what the program's glibc calls reach."""
    # An ordinary program (first-load-glibc does not link dynload) for glibc
    # and for `dynload run`: a program that links dynload exports its
    # `_dl_find_object`, and a preloaded libdynload.so would be a second
    # loader in it.
    program = RELEASE / "examples" / {"dlopen-rs": "first-load-dlopen-rs", "dynload": "first-load"}.get(
        loader, "first-load-glibc")
    argv = [existing(program), "glibc" if loader == PRELOAD else loader, load.mode, object_path(loader, load.object)]
    if load.warm:
        argv.append(object_path(loader, load.warm))
    return argv


def loader_env(loader, search=True):
    """dlopen-rs does not find libz3 (libLLVM-15's dependency) on its own:
    its program gets LD_LIBRARY_PATH, and only it. PRELOAD gets what
    `dynload run` sets, and nothing else does; set here rather than through
    `dynload run`, so that valgrind runs the program itself."""
    env = dict(os.environ)
    if loader == "dlopen-rs" and search:
        env["LD_LIBRARY_PATH"] = str(SYSTEM_LIBS)
    if loader == PRELOAD:
        env["LD_PRELOAD"] = ":".join(filter(None, (existing(LIBDYNLOAD), env.get("LD_PRELOAD"))))
    return env


def first_load(loader, load, search=True, heap_offset=0):
    """One fresh process: {"ns", "rss_kb", "mappings", "heap_bytes", ...}."""
    env = loader_env(loader, search)
    if heap_offset:
        env["FIRST_LOAD_HEAP_OFFSET"] = str(heap_offset)
    proc = subprocess.run(first_load_argv(loader, load), env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Failed(tail(proc.stderr) or f"exit status {proc.returncode}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise Failed(f"unreadable output: {proc.stdout!r}")


def read_whole(loads):
    """Read every file the loads map, each loader's copies too, so that all
    their pages are in the page cache: the kernel maps around a fault only
    pages it has there, and a file with pages missing showed fewer resident
    pages (`many`: glibc's copy at 208 KiB against 248 in one run, with 12
    KiB of its code resident; 64 KiB for either loader once the file had
    been read again)."""
    for load in loads:
        for loader in LOADERS:
            for name in filter(None, (load.object, load.warm)):
                try:
                    path = Path(object_path(loader, name))
                except Failed:
                    continue
                files = sorted(path.iterdir()) if path.is_dir() else [path]
                for f in files:
                    if f.is_file():
                        f.read_bytes()


def sample_first_loads(loads, runs, heap_offsets=(0,)):
    """{load name: {loader: {"samples": [...]} or {"error": ...}}}. The
    files are read whole first (`read_whole`), and round 0 warms the page
    cache and is not kept; a loader that fails once is not
    tried again for that load. Each round starts with the next loader, so
    that none is always the first process after another case's, and takes
    the next of `heap_offsets` for all its processes."""
    read_whole(loads)
    table = {load.name: {loader: {"samples": []} for loader in LOADERS} for load in loads}
    for round_ in range(runs + 1):
        order = LOADERS[round_ % len(LOADERS):] + LOADERS[:round_ % len(LOADERS)]
        for load in loads:
            for loader in order:
                entry = table[load.name][loader]
                if "error" in entry:
                    continue
                try:
                    sample = first_load(loader, load, heap_offset=heap_offsets[round_ % len(heap_offsets)])
                except Failed as e:
                    entry.pop("samples")
                    entry["error"] = str(e)
                    continue
                if round_:
                    entry["samples"].append(sample)
    return table


def time_summary(samples):
    ns = [s["ns"] for s in samples]
    return {"median_ns": statistics.median(ns), "min_ns": min(ns), "ns": ns}


def memory_summary(samples):
    """Per object loaded (a load's figures divided by the objects it added
    to the process, its dependencies too: `objects`, the files newly
    mapped with execute permission): medians, except resident memory's
    minimum and private memory's mean. The
    kernel maps up to 16 file pages around each fault, in windows aligned
    to 64 KiB of address space, so where address randomisation puts an
    object adds 0 to 64 KiB of file pages for the same pages touched
    (`many`: 248 or 312 KiB under either loader). That noise mostly adds;
    the minimum is the run with the least of it. Private memory counts
    whole pages of the heap, and the runs place the heap's top at
    different offsets in its page (`HEAP_OFFSETS`): their mean is what
    the load's heap bytes cost in pages, wherever they land. Every run's
    resident and private figures are kept (`rss_kb_runs`, `anon_kb_runs`),
    to show the spread."""
    per_object = lambda key: [s[key] / max(s.get("objects", 1), 1) for s in samples]
    pick = {"rss_kb": min, "anon_kb": statistics.mean}
    summary = {key: pick.get(key, statistics.median)(per_object(key))
               for key in ("rss_kb", "anon_kb", "mappings", "heap_bytes") if key in samples[0]}
    summary["rss_kb_runs"] = per_object("rss_kb")
    if "anon_kb" in samples[0]:
        summary["anon_kb_runs"] = per_object("anon_kb")
    summary["objects"] = statistics.median(s.get("objects", 1) for s in samples)
    return summary


def summarise(loads, table, summary):
    rows = []
    for load in loads:
        loaders = {name: (summary(e["samples"]) if "samples" in e else e) for name, e in table[load.name].items()}
        rows.append({**asdict(load), "case": load.name, "loaders": loaders})
    return rows


def measure_first_loads(runs):
    loads = BIG_LOADS + (ONE_MORE_OBJECT, *RELOCATIONS)
    log(f"first loads: {len(loads)} cases x {len(LOADERS)} loaders x {runs} runs")
    return summarise(loads, sample_first_loads(loads, runs), time_summary)


def measure_memory():
    log(f"memory: {len(MEMORY_LOADS)} cases x {len(LOADERS)} loaders x {MEMORY_RUNS} runs")
    samples = sample_first_loads(MEMORY_LOADS, MEMORY_RUNS, HEAP_OFFSETS)
    return summarise(MEMORY_LOADS, samples, memory_summary)


def dlopen_rs_error(lib, search):
    try:
        first_load("dlopen-rs", Load(lib), search)
    except Failed as e:
        return str(e)
    return None


def dlopen_rs_search_needs():
    """The big libraries dlopen-rs loads only with LD_LIBRARY_PATH, with its
    error without: the record of why the variable is set."""
    needs = {}
    for lib in BIG_LIBS:
        without = dlopen_rs_error(lib, search=False)
        if without and not dlopen_rs_error(lib, search=True):
            needs[lib] = without
    return needs


# ---------------------------------------------------------------- callgrind

def callgrind_ir(loader, load, workdir):
    """Ir of everything under `measured_load` in one run, and of dynload's
    helper thread (`two_cores::run`: its work is part of the load, but not
    under `measured_load` on its own thread)."""
    out = Path(workdir) / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--toggle-collect=measured_load",
            "--toggle-collect=*two_cores*run*",
            f"--callgrind-out-file={out}", *first_load_argv(loader, load)]
    proc = subprocess.run(argv, env=loader_env(loader), capture_output=True, text=True)
    if proc.returncode != 0:
        own = [line for line in proc.stderr.splitlines() if not line.startswith("==")]
        raise Failed(tail("\n".join(own)) or f"exit status {proc.returncode}")
    for line in out.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise Failed(f"no totals in {out}")


def instructions(loader, load, workdir):
    """Ir of the load of `load.object` (the programs load WARM_PATH through
    another function, which callgrind does not count)."""
    return {"ir": callgrind_ir(loader, load, workdir)}


def measure_instructions(quick):
    loads = (ONE_MORE_OBJECT,) if quick else BIG_LOADS + (ONE_MORE_OBJECT, *RELOCATIONS)
    log(f"callgrind: {len(loads)} cases x {len(LOADERS)} loaders")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for load in loads:
            loaders = {}
            for loader in LOADERS:
                try:
                    loaders[loader] = instructions(loader, load, workdir)
                except Failed as e:
                    loaders[loader] = {"error": str(e)}
            rows.append({**asdict(load), "case": load.name, "loaders": loaders})
    return rows


# ---------------------------------------------------------------- python

PROBE = """
import importlib, importlib.util, json, platform, sys
kept = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    origin = importlib.util.find_spec(name).origin or ""
    if origin.endswith(".so"):
        kept.append(name)
print(json.dumps({"executable": sys.executable, "version": platform.python_version(), "modules": kept}))
"""


def probe_interpreter(command):
    """The real executable (pyenv's `python3` is a shell script, which must
    not be what `dynload run` starts), its version, and which of
    PYTHON_MODULES it can import as shared objects."""
    try:
        proc = subprocess.run([command, "-c", PROBE, *PYTHON_MODULES], capture_output=True, text=True)
    except OSError as e:
        raise Failed(str(e))
    if proc.returncode != 0:
        raise Failed(tail(proc.stderr))
    return json.loads(proc.stdout)


def timed_run(argv):
    start = time.perf_counter_ns()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter_ns() - start
    if proc.returncode != 0:
        raise Failed(tail(proc.stderr))
    return elapsed


def python_variants(info):
    argv = [info["executable"], "-c", "import " + ", ".join(info["modules"])]
    return {"glibc": argv, "dynload": [str(RELEASE / "dynload"), "run", "--", *argv]}


def measure_python(runs):
    """Whole-process times, plain and under `dynload run`, interleaved run
    by run after one unrecorded round."""
    rows = []
    for command in INTERPRETERS:
        try:
            rows.append({"interpreter": command, **probe_interpreter(command), "ns": {"glibc": [], "dynload": []}})
        except Failed as e:
            rows.append({"interpreter": command, "error": str(e)})
    live = [row for row in rows if "error" not in row]
    log(f"python: {len(live)} interpreters x 2 x {runs} runs")
    for round_ in range(runs + 1):
        for row in list(live):
            try:
                times = {name: timed_run(argv) for name, argv in python_variants(row).items()}
            except Failed as e:
                row["error"] = str(e)
                live.remove(row)
                continue
            for name, ns in times.items():
                if round_:
                    row["ns"][name].append(ns)
    for row in live:
        row["median_ns"] = {name: statistics.median(ns) for name, ns in row["ns"].items()}
    return rows


# ---------------------------------------------------------------- ratios and targets

def ratio(a, b):
    return a / b if a is not None and b else None


def label(loader):
    return LABELS.get(loader, loader)


def ratio_key(loader):
    return f"{loader}/glibc"


def comparison(kind, case, values, unit):
    ratios = {ratio_key(name): ratio(values.get(name), values.get("glibc")) for name in LOADERS[1:]}
    return {"kind": kind, "case": case, "unit": unit, "values": values, **ratios}


def figure(entry, key):
    return entry.get(key) if entry else None


def comparisons(results):
    """Every case as {kind, case, values per loader, ratios to glibc}: what
    the chart, the tables and the targets read."""
    rows = []
    for group, loaders in results.get("criterion", {}).get("cases", {}).items():
        values = {name: figure(loaders.get(name), "median_ns") for name in CRITERION_LOADERS}
        row = comparison("criterion", group, values, "ns")
        rounds = round_ratios(loaders)
        if rounds:
            # Each round's two figures were measured one after the other:
            # their ratio, not the ratio of medians from different rounds.
            row["dynload/glibc"] = statistics.median(rounds)
        row["criterion dynload/glibc"] = row["dynload/glibc"]
        paired = results.get("paired", {}).get("cases", {}).get(group)
        if paired:
            # The ratio that counts: see `run_paired`.
            row["dynload/glibc"] = paired["ratio"]
            row["paired_ns"] = {"glibc": paired["glibc_ns"], "dynload": paired["dynload_ns"]}
        rows.append(row)
    for row in results.get("first_load", []):
        values = {name: figure(row["loaders"].get(name), "median_ns") for name in LOADERS}
        rows.append(comparison("first_load", row["case"], values, "ns"))
    for row in results.get("instructions", []):
        values = {name: figure(row["loaders"].get(name), "ir") for name in LOADERS}
        rows.append(comparison("instructions", row["case"], values, "Ir"))
    for row in results.get("python", []):
        if "median_ns" in row:
            # `dynload run` is the preloaded configuration.
            med = row["median_ns"]
            values = {"glibc": med["glibc"], PRELOAD: med["dynload"]}
            rows.append(comparison("python", python_label(row), values, "ns"))
    return rows


def python_label(row):
    return f"{row['interpreter']} {row['version']}"


def configs(kind):
    """Criterion measures dynload through its Rust API only."""
    return CONFIGS[:1] if kind == "criterion" else CONFIGS


def evaluate(target, rows, config):
    key = ratio_key(config)
    value = next((r[key] for r in rows if (r["kind"], r["case"]) == (target.kind, target.case)), None)
    met = None if value is None else value <= target.limit * (1 + target.tolerance)
    record = {**asdict(target), "config": config, "measure": ratio_key(label(config)), "target": target.text(),
              "value": value, "met": met}
    if target.stretch:
        record["stretch_met"] = None if value is None else value <= target.stretch
    return record


def per_object_kib(entry):
    """Resident memory added by one object, in KiB (VmRSS: the object's
    touched pages and the loader's heap pages alike; heap bytes are shown
    beside it, not added, as they are resident too)."""
    return entry["rss_kb"]


def measured(entry):
    """An entry with figures: not an error, nor missing (results.json
    written before the loader was measured)."""
    return entry is not None and "error" not in entry


def kib_measure(config):
    return f"{label(config)} − glibc resident (KiB)"


def private_measure(config):
    return f"{label(config)} − glibc private (KiB)"


def maps_measure(config):
    return f"{label(config)} − glibc mappings"


def memory_targets(row, config):
    """Per object, dynload may add at most 1 KiB of resident memory, and of
    private memory (RssAnon: the heap and written pages, without the file
    pages the kernel maps around each fault, which move a single big
    library's resident size by tens of KiB from run to run), and no mapping
    more than glibc does."""
    glibc, dynload = row["loaders"]["glibc"], row["loaders"].get(config)
    both = measured(glibc) and measured(dynload)
    kib = per_object_kib(dynload) - per_object_kib(glibc) if both else None
    private = (dynload["anon_kb"] - glibc["anon_kb"]
               if both and "anon_kb" in glibc and "anon_kb" in dynload else None)
    maps = dynload["mappings"] - glibc["mappings"] if both else None
    common = {"kind": "memory", "case": row["case"], "config": config}
    limit = {"target": f"≤ glibc + {MEMORY_LIMIT_KIB:g} KiB", "limit": MEMORY_LIMIT_KIB}
    return [{**common, "measure": kib_measure(config), **limit,
             "value": kib, "met": None if kib is None else kib <= MEMORY_LIMIT_KIB},
            {**common, "measure": private_measure(config), **limit,
             "value": private, "met": None if private is None else private <= MEMORY_LIMIT_KIB},
            {**common, "measure": maps_measure(config), "target": "≤ glibc", "limit": 0,
             "value": maps, "met": None if maps is None else maps <= 0}]


def derive(results):
    """Ratios and targets, from the raw figures, for each configuration of
    dynload."""
    rows = comparisons(results)
    results["ratios"] = rows
    results["targets"] = [evaluate(t, rows, config) for t in TARGETS for config in configs(t.kind)]
    results["targets"] += [record for row in results.get("memory", []) for config in CONFIGS
                           for record in memory_targets(row, config)]


# ---------------------------------------------------------------- formatting

def three_digits(x):
    """3 significant digits, never in exponent notation."""
    if x == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def format_time(ns):
    if ns is None:
        return "—"
    ns = float(f"{ns:.3g}")
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{three_digits(ns / scale)} {unit}"
    return f"{three_digits(ns)} ns"


def format_ratio(r):
    return "—" if r is None else three_digits(r)


def format_met(record):
    if record is None:
        return ""
    if record["met"] is None:
        return "not measured"
    text = "yes" if record["met"] else "**no**"
    if record.get("stretch") is not None and record.get("stretch_met") is not None:
        text += f" (stretch: {'yes' if record['stretch_met'] else 'no'})"
    return text


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- README section

def target_for(results, kind, case, measure="dynload/glibc"):
    return next((t for t in results["targets"]
                 if (t["kind"], t["case"], t["measure"]) == (kind, case, measure)), None)


def criterion_rounds_line(results):
    rounds = results.get("criterion", {}).get("rounds", 1)
    runs = results.get("paired", {}).get("runs", 0)
    return (f"In-process operations: the ratio dynload/glibc is the `paired` bench's, run in {runs} "
            "processes: in each, pairs of short batches (2 ms or more each; glibc's batch, then "
            "dynload's, the order alternating), for 3 seconds and at least 200 pairs a case; a run's "
            "ratio is the median of its pairs' ratios (\"each run\"), the ratio the median of the "
            "runs', and the times beside it the medians of the runs' medians, per iteration. This "
            "machine's speed moves by half from minute to minute, which a pair's two figures, "
            "measured milliseconds apart, share. Criterion's times, each loader measured for "
            f"seconds on its own ({rounds} round{'s' if rounds != 1 else ''} of the loader bench, "
            "the two loaders of a case one after the other; dlopen-rs in a process of its own), "
            "are given with the ratio they make.")


def criterion_table(results):
    paired = results.get("paired", {}).get("cases", {})
    rows = []
    for r in results["ratios"]:
        if r["kind"] != "criterion":
            continue
        t = target_for(results, "criterion", r["case"])
        pair = r.get("paired_ns", {})
        runs = paired.get(r["case"], {}).get("runs", [])
        rows.append([r["case"], *(format_time(pair.get(name)) for name in ("glibc", "dynload")),
                     format_ratio(r["dynload/glibc"]),
                     ", ".join(format_ratio(run["ratio"]) for run in runs) or "—",
                     *(format_time(r["values"][name]) for name in CRITERION_LOADERS),
                     format_ratio(r["criterion dynload/glibc"]),
                     t["target"] if t else "", format_met(t)])
    header = ["case", "glibc", "dynload", "dynload/glibc", "each run",
              *(f"criterion: {name}" for name in CRITERION_LOADERS), "criterion: dynload/glibc",
              "target", "met"]
    return markdown_table(header, rows)


def round_ratios(loaders):
    """dynload/glibc in each round of the loader bench that measured both,
    in order."""
    pairs = zip(loaders.get("dynload", {}).get("rounds_ns", []), loaders.get("glibc", {}).get("rounds_ns", []))
    return [r for r in (ratio(d, g) for d, g in pairs) if r is not None]


def first_load_table(results):
    """Times and ratios of every loader; instruction ratios and targets of
    each configuration of dynload."""
    ir = {r["case"]: r for r in results["ratios"] if r["kind"] == "instructions"}
    rows = []
    for r in results["ratios"]:
        if r["kind"] != "first_load":
            continue
        ts = [target_for(results, "first_load", r["case"], ratio_key(label(c))) for c in CONFIGS]
        irs = [format_ratio(ir[r["case"]][ratio_key(c)]) if r["case"] in ir else "—" for c in CONFIGS]
        rows.append([r["case"], *(format_time(r["values"][name]) for name in LOADERS),
                     *(format_ratio(r[ratio_key(name)]) for name in LOADERS[1:]),
                     *irs, ts[0]["target"] if ts[0] else "", *map(format_met, ts)])
    header = ["library, mode", *map(label, LOADERS), *(ratio_key(label(name)) for name in LOADERS[1:]),
              *(f"instructions {ratio_key(label(c))}" for c in CONFIGS), "target",
              *(f"{label(c)} met" for c in CONFIGS)]
    return markdown_table(header, rows)


def memory_cell(entry):
    if not measured(entry):
        return "—"
    private = f"private {entry['anon_kb']:,.1f} KiB, " if "anon_kb" in entry else ""
    objects = entry.get("objects", 1)
    divided = f" (÷ {objects:g} objects)" if objects != 1 else ""
    return (f"{per_object_kib(entry):,.1f} KiB ({private}heap {entry['heap_bytes']:,.0f} B), "
            f"{entry['mappings']:.3g} maps{divided}")


def memory_checks(results, case, config):
    """Differences to glibc and whether they are within the targets."""
    kib = target_for(results, "memory", case, kib_measure(config))
    private = target_for(results, "memory", case, private_measure(config))
    maps = target_for(results, "memory", case, maps_measure(config))
    return [format_target_value(kib), format_met(kib), format_target_value(private), format_met(private),
            format_target_value(maps), format_met(maps)]


def memory_table(results):
    rows = []
    for row in results.get("memory", []):
        rows.append([row["object"], row["warm"], *(memory_cell(row["loaders"].get(name)) for name in LOADERS),
                     *(cell for config in CONFIGS for cell in memory_checks(results, row["case"], config))])
    checks = [[f"{label(c)} − glibc", f"≤ {MEMORY_LIMIT_KIB:g} KiB", f"private {label(c)} − glibc",
               f"≤ {MEMORY_LIMIT_KIB:g} KiB", f"mappings {label(c)} − glibc", "≤ 0"]
              for c in CONFIGS]
    header = ["object", "loaded after", *map(label, LOADERS), *(h for c in checks for h in c)]
    return markdown_table(header, rows)


def python_table(results):
    rows, notes = [], []
    for row in results.get("python", []):
        if "median_ns" not in row:
            notes.append(f"- `{row['interpreter']}`: not measured: {row['error']}")
            continue
        med = row["median_ns"]
        rows.append([f"`{row['interpreter']}` ({row['version']}, `{row['executable']}`)", len(row["modules"]),
                     format_time(med["glibc"]), format_time(med["dynload"]),
                     format_ratio(ratio(med["dynload"], med["glibc"]))])
        notes.append(f"- `{row['interpreter']}` imports: {', '.join(row['modules'])}")
    table = markdown_table(["interpreter", "modules", "plain", "`dynload run`", "ratio"], rows)
    return "\n".join([table, "", *notes])


def dlopen_rs_failures(results):
    """Every case dlopen-rs has no figure for, with the reason."""
    failures = []
    criterion = results.get("criterion", {})
    bench = criterion.get("benches", {}).get("dlopen_rs")
    if bench not in (None, "ok"):
        failures.append(("criterion, every case", f"the dlopen_rs bench {bench}"))
    for group, loaders in criterion.get("cases", {}).items():
        if bench == "ok" and "dlopen-rs" not in loaders:
            failures.append((group, "not a case of the dlopen_rs bench"))
    for section in ("first_load", "instructions", "memory"):
        for row in results.get(section, []):
            entry = row["loaders"]["dlopen-rs"]
            if "error" in entry:
                failures.append((f"{section.replace('_', ' ')}: {row['case']}", entry["error"]))
    return failures


def failure_lines(results):
    lines = [f"- {case}: {why}" for case, why in dlopen_rs_failures(results)]
    needs = results["settings"].get("dlopen_rs_needs_ld_library_path") or {}
    for lib, error in needs.items():
        lines.append(f"- {lib} without `LD_LIBRARY_PATH={SYSTEM_LIBS}`: {error} "
                     "(so its program runs with that variable set)")
    return lines or ["- none"]


def format_target_value(t):
    if t["value"] is None:
        return "—"
    if t["measure"].endswith("/glibc"):
        return format_ratio(t["value"])
    unit = " KiB" if "KiB" in t["measure"] else ""
    return f"{t['value']:+,.1f}{unit}" if unit else f"{t['value']:+g}"


SYSTEM_CALLS_ALONE = "open_close_tiny_system_calls_alone"
OPEN_CLOSE_FLOOR = "open_close_tiny_floor"
LAZY_FLOOR = "relocations_lazy_floor"
# The paired bench's floors: each is a replay of dynload's cycle with no
# loader code (system_calls.rs), or with only the work no loader can skip
# (open_close_floor.rs, lazy_floor.rs), under the case it belongs to.
FLOORS = {"open_close_tiny": [(SYSTEM_CALLS_ALONE, "its system calls alone"),
                              (OPEN_CLOSE_FLOOR, "its floor")],
          "relocations_lazy": [(LAZY_FLOOR, "its floor")]}


def paired_case(results, case):
    """The paired bench's reading of `case`, or None."""
    return results.get("paired", {}).get("cases", {}).get(case)


def floor_line(results, case, text):
    """The paragraph for one floor (`text` says what it is), or none."""
    floor = paired_case(results, case)
    if not floor:
        return []
    runs = ", ".join(format_ratio(run["ratio"]) for run in floor["runs"])
    return [
        f"`{case}`: {text}: {format_time(floor['dynload_ns'])} against glibc's "
        f"{format_time(floor['glibc_ns'])}, {format_ratio(floor['ratio'])} of it (each run: {runs}).",
        "",
    ]


def system_calls_lines(results):
    """What the kernel's part of open+close takes, and the least any loader
    could take for the relocation cycle, as fractions of glibc's whole
    cycle: the floors under those targets."""
    return [
        *floor_line(results, SYSTEM_CALLS_ALONE,
                    "the system calls dynload makes to open and close `tiny`, and the two page "
                    "faults its load takes, made by the bench with no loader code around them, "
                    "paired with glibc's open+close as above. That is the kernel's part of "
                    "dynload's open+close, without any of the loader's own work"),
        *floor_line(results, OPEN_CLOSE_FLOOR,
                    "the same system calls and faults, with between them only the work no "
                    "loader can skip and no checks beyond the ELF header's (the headers and "
                    "the dynamic section read; each relocation applied, each symbol's name "
                    "hashed and looked up through the global scope's Bloom filters and hash "
                    "tables, then the object's own; the initializers and finalizers run), "
                    "and nothing recorded. A loader that makes dynload's system calls cannot "
                    "take less"),
        *floor_line(results, LAZY_FLOOR,
                    "the same for `reloc` opened `RTLD_LAZY`, with between the calls only the "
                    "relocation work no loader can skip and no checks at all (each "
                    "R_X86_64_64 entry's name hashed, the object's own Bloom filter and the "
                    "dependency's hash table asked, the name compared, the value stored; each "
                    "JUMP_SLOT rebased; no global scope, types, bounds, kinds or versions), "
                    "paired with glibc's `relocations_lazy` cycle. A loader that makes dynload's "
                    "system calls cannot take less"),
    ]


def miss_lines(results):
    lines = []
    for t in results["targets"]:
        value = format_target_value(t)
        kind = "in-process" if t["kind"] == "criterion" else t["kind"].replace("_", " ")
        where = f"{kind} {t['case']}, {t['measure']}"
        for floor_case, floor_name in FLOORS.get(t["case"], []):
            floor = paired_case(results, floor_case)
            if floor:
                value += f"; {floor_name} {format_ratio(floor['ratio'])}"
        if t["met"] is False:
            lines.append(f"- {where}: {value} (target {t['target']})")
        elif t["met"] is None:
            lines.append(f"- {where}: not measured (target {t['target']})")
        elif t.get("stretch_met") is False:
            lines.append(f"- {where}: {value} (stretch target ≤ {t['stretch']:g})")
    return lines or ["- none"]


def note_lines(results):
    """Stages left out of this run, and why."""
    skipped = [f"{stage}: skipped (--skip-{stage})" for stage in results["settings"]["skipped"]]
    notes = skipped + results.get("notes", [])
    return [*(f"- {note}" for note in notes), ""] if notes else []


def readme_section(results, readme):
    m, s = results["machine"], results["settings"]
    chart = os.path.relpath(CHART, Path(readme).resolve().parent)
    mode = " (quick mode: short criterion and paired runs, few samples)" if s["quick"] else ""
    return "\n".join([
        f"Generated by `python3 scripts/bench.py` on {m['date']} at commit `{m['commit']}`{mode}.",
        "",
        f"Machine: {machine_line(m)}.",
        "",
        f"![ratios]({chart})",
        "",
        "Ratios below 1 mean dynload is faster (or smaller) than glibc's loader. "
        "`tiny`, `many` and `reloc` are the bench's fixtures (one function; 10,000 symbols; "
        "4,000 symbolic relocations against `relocdep`), "
        "each loader loading its own copy. dynload is called directly, linked into the measuring "
        "program (its Rust API; the program exports dynload's `_dl_find_object`); "
        f"{label(PRELOAD)} is an ordinary program's `dlopen` (glibc's measuring program) "
        "reaching libdynload.so, preloaded as "
        "`dynload run` does (its C ABI).",
        "",
        *note_lines(results),
        criterion_rounds_line(results),
        "",
        criterion_table(results),
        "",
        *system_calls_lines(results),
        f"First load in a fresh process: the `dlopen` call alone, median of {s['runs']} runs "
        "(instructions: callgrind's Ir of the same call, dynload's helper thread included):",
        "",
        first_load_table(results),
        "",
        f"Memory added per object (VmRSS growth; its private part, RssAnon: heap and written pages; "
        f"the heap bytes in use; mappings), median of {MEMORY_RUNS} runs (resident: their minimum, "
        f"since the file pages the kernel maps around a fault depend on where the object lands; "
        f"private: their mean, the runs having placed the top of the heap at {len(HEAP_OFFSETS)} "
        f"offsets in its page, {HEAP_OFFSETS[1] - HEAP_OFFSETS[0]} bytes apart, since whether a "
        f"load's last few hundred bytes take one more page depends on where they land). "
        "Each load's figures are divided by the objects it added to the process, its dependencies "
        "included (the files it mapped with execute permission, counted by each measuring program): "
        f"`{COPIES}` is {TINY_COPIES} copies of `tiny` loaded one after another; "
        f"{' and '.join(f'`{name}`' for name in SEARCHED)} "
        "are given by name, for each loader to search the library path; "
        "libz3 is measured with its dependencies (libstdc++, and libm, which glibc loads for dynload too: "
        "dynload hands the C runtime to glibc; libgcc_s is already there) and alone, once libstdc++ "
        "brought them:",
        "",
        memory_table(results),
        "",
        f"Python: `python -c 'import ...'` of the extension modules below, whole process, "
        f"median of {s['runs']} runs:",
        "",
        python_table(results),
        "",
        "Where dlopen-rs could not run:",
        "",
        *failure_lines(results),
        "",
        "Misses:",
        "",
        *miss_lines(results),
    ])


def readme_parts(readme):
    """The README split around the markers; fails before any measurement
    when they are missing."""
    text = Path(readme).read_text()
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        sys.exit(f"bench.py: {readme} has no '{BEGIN}' ... '{END}' markers; "
                 "add them (each on its own line) where the performance section belongs")
    head, rest = text.split(BEGIN, 1)
    return head, rest.split(END, 1)[1]


def write_readme(results, readme):
    head, tail_ = readme_parts(readme)
    Path(readme).write_text(f"{head}{BEGIN}\n{readme_section(results, readme)}\n{END}{tail_}")
    log(f"{readme}: performance section rewritten")


# ---------------------------------------------------------------- chart

COLORS = {"dynload": "#1f77b4", PRELOAD: "#2ca02c", "dlopen-rs": "#ff7f0e"}
LABEL_W, PLOT_W, VALUE_W = 290, 470, 210
BAR_H, HEADER_H, TOP = 9, 24, 78
ROW_H = 5 + len(COLORS) * (BAR_H + 2)
# Width of a character of the legend, roughly, to space its entries.
CHAR_W = 7


def log_domain(values):
    """Whole decades around every ratio and target, at least 0.1 to 10."""
    lo = min([0.1, *values])
    hi = max([10.0, *values])
    return 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))


def scale(domain):
    lo, hi = (math.log10(v) for v in domain)
    return lambda r: LABEL_W + PLOT_W * (math.log10(min(max(r, domain[0]), domain[1])) - lo) / (hi - lo)


def svg_text(x, y, text, anchor="start", size=12, weight="normal", color="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}" fill="{color}">{html.escape(text)}</text>')


def svg_line(x1, y1, x2, y2, color, width=1.0):
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{color}" stroke-width="{width}"/>')


def ticks(domain):
    """1, 2 and 5 of each decade when there are few decades, else decades."""
    decades = range(round(math.log10(domain[0])), round(math.log10(domain[1])) + 1)
    steps = (1, 2, 5) if len(decades) <= 4 else (1,)
    return [s * 10 ** d for d in decades for s in steps if s * 10 ** d <= domain[1]]


def axis(domain, x, y_top, y_bottom):
    parts = []
    for t in ticks(domain):
        parts.append(svg_line(x(t), y_top, x(t), y_bottom, "#ddd"))
        parts.append(svg_text(x(t), y_top - 4, f"{t:g}", "middle", 10, color="#666"))
        parts.append(svg_text(x(t), y_bottom + 12, f"{t:g}", "middle", 10, color="#666"))
    parts.append(svg_line(x(1), y_top, x(1), y_bottom, "#000", 1.5))
    return parts


def legend(y):
    parts, x = [], LABEL_W
    for name, color in COLORS.items():
        text = ratio_key(label(name))
        parts.append(f'<rect x="{x}" y="{y - 9}" width="14" height="10" fill="{color}"/>')
        parts.append(svg_text(x + 18, y, text))
        x += 18 + CHAR_W * len(text) + 14
    parts.append(svg_line(x + 6, y - 11, x + 6, y + 2, "#d62728", 2.5))
    parts.append(svg_text(x + 14, y, "target (either dynload)"))
    parts.append(svg_text(LABEL_W - 8, y, "1.0 = glibc; log scale", "end", 11, color="#666"))
    return parts


def chart_row(row, target, x, y):
    """Label, one bar per comparison from 1.0 to the ratio, the target tick,
    and the values in words."""
    parts = [svg_text(LABEL_W - 8, y + ROW_H / 2 + 4, row["case"], "end")]
    for i, (name, color) in enumerate(COLORS.items()):
        r = row[ratio_key(name)]
        if not r or r <= 0:
            continue
        bar_y = y + 3 + i * (BAR_H + 2)
        left, right = sorted((x(1), x(r)))
        parts.append(f'<rect x="{left:.1f}" y="{bar_y}" width="{max(right - left, 1):.1f}" '
                     f'height="{BAR_H}" fill="{color}"/>')
        text = f"{label(name)} {format_ratio(r)}×"
        parts.append(svg_text(LABEL_W + PLOT_W + 12, bar_y + BAR_H - 1, text, size=11, color=color))
    if target is not None:
        parts.append(svg_line(x(target), y + 1, x(target), y + ROW_H - 3, "#d62728", 2.5))
    return parts


def chart_rows(results):
    """(kind, rows with a ratio) in KINDS order."""
    for kind in KINDS:
        rows = [r for r in results["ratios"] if r["kind"] == kind and any(bar_ratios(r))]
        if rows:
            yield kind, rows


def plot_rows(groups, targets, x, width):
    """Section headers and rows from y = TOP down: (stripes behind the
    grid, everything else, the y reached)."""
    stripes, marks, y = [], [], TOP
    for kind, rows in groups:
        marks.append(svg_text(12, y + 16, KINDS[kind], size=12, weight="bold"))
        y += HEADER_H
        for i, row in enumerate(rows):
            if i % 2:
                stripes.append(f'<rect x="0" y="{y}" width="{width}" height="{ROW_H}" fill="#f2f2f2"/>')
            marks += chart_row(row, targets.get((kind, row["case"])), x, y)
            y += ROW_H
    return stripes, marks, y


def bar_ratios(row):
    """The row's ratios that make a bar."""
    return [r for r in (row[ratio_key(name)] for name in COLORS) if (r or 0) > 0]


def chart_svg(results):
    targets = {(t["kind"], t["case"]): t["limit"] for t in results["targets"] if t["measure"].endswith("/glibc")}
    groups = list(chart_rows(results))
    values = [r for _, rows in groups for row in rows for r in bar_ratios(row)]
    values += list(targets.values())
    domain = log_domain(values)
    x = scale(domain)
    width = LABEL_W + PLOT_W + VALUE_W
    stripes, marks, bottom = plot_rows(groups, targets, x, width)
    height = bottom + 30
    m = results["machine"]
    title = f"dynload and dlopen-rs relative to glibc's loader (commit {m['commit']}, {m['date']})"
    body = [f'<rect width="{width}" height="{height}" fill="white"/>', svg_text(12, 22, title, size=14, weight="bold"),
            *legend(46), *stripes, *axis(domain, x, TOP - 8, bottom + 6), *marks]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">\n'
            + "\n".join(body) + "\n</svg>\n")


# ---------------------------------------------------------------- main

def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="short criterion runs, 3 runs, callgrind on the tiny fixture only")
    p.add_argument("--runs", type=int, help="fresh-process runs per case (default 21, 3 with --quick)")
    p.add_argument("--rounds", type=int, help="runs of the criterion loader bench (default 1)")
    p.add_argument("--report-only", action="store_true",
                   help="redo the ratios, targets, bench/ratios.svg and the README section "
                        "from bench/results.json")
    p.add_argument("--skip-criterion", action="store_true")
    p.add_argument("--skip-python", action="store_true")
    p.add_argument("--skip-callgrind", action="store_true")
    p.add_argument("--readme", default=str(ROOT / "README.md"), help="the README to rewrite (default README.md)")
    args = p.parse_args()
    args.runs = args.runs or (3 if args.quick else 21)
    args.rounds = args.rounds or 1
    return args


def settings(args):
    skipped = [s for s in ("criterion", "python", "callgrind") if getattr(args, "skip_" + s)]
    return {"quick": args.quick, "runs": args.runs, "criterion_rounds": args.rounds, "paired_runs": PAIRED_RUNS,
            "memory_runs": MEMORY_RUNS,
            "criterion_args": ["--noplot", *(QUICK_CRITERION if args.quick else [])],
            "skipped": skipped, "dlopen_rs_env": {"LD_LIBRARY_PATH": str(SYSTEM_LIBS)},
            "dynload_preload_env": {"LD_PRELOAD": str(LIBDYNLOAD)},
            "instructions": "Ir under measured_load and in dynload's helper thread (the programs load a warm-up object outside it)"}


def measure(args):
    """Every stage the options leave in, in order: criterion first, as it
    builds the fixtures the later stages load."""
    start = time.monotonic()
    results = {"machine": describe_machine(), "settings": settings(args), "notes": []}
    build()
    if not args.skip_criterion:
        results["criterion"] = run_criterion(args.quick, args.rounds)
        results["paired"] = run_paired(args.quick, PAIRED_RUNS)
    results["settings"]["dlopen_rs_needs_ld_library_path"] = dlopen_rs_search_needs()
    results["first_load"] = measure_first_loads(args.runs)
    if not args.skip_callgrind and not shutil.which("valgrind"):
        results["notes"].append("valgrind not found: no instruction counts")
    elif not args.skip_callgrind:
        results["instructions"] = measure_instructions(args.quick)
    results["memory"] = measure_memory()
    if not args.skip_python:
        results["python"] = measure_python(args.runs)
    results["settings"]["duration_s"] = round(time.monotonic() - start, 1)
    derive(results)
    return results


def main():
    args = parse_args()
    readme_parts(args.readme)
    if args.report_only:
        if not RESULTS.exists():
            sys.exit(f"bench.py: {RESULTS} does not exist; run without --report-only first")
        results = json.loads(RESULTS.read_text())
        derive(results)
        # (The raw figures stay as they were; the ratios and targets are
        # derived again.)
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        log(f"{RESULTS}: ratios and targets derived again")
    else:
        results = measure(args)
        OUT.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        log(f"{RESULTS} written ({results['settings']['duration_s']} s)")
    CHART.write_text(chart_svg(results))
    log(f"{CHART} written")
    write_readme(results, args.readme)


if __name__ == "__main__":
    main()
