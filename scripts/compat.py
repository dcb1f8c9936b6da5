#!/usr/bin/env python3
"""Real extension modules from PyPI wheels, under glibc and under `dynload run`.

What it proves: CPython extension modules as users get them -- manylinux
wheels built with PyO3, C, C++ and Cython, some carrying their own copies of
libraries in `<package>.libs/` reached through `$ORIGIN` DT_RPATH -- load and
work when every `dlopen` of the interpreter goes through dynload, exactly as
they do under glibc's loader:

1. exercise: for each package, a short program imports it and does real work
   (JSON, BLAS and FFT, AES-GCM, validation, image codecs, XPath/XSLT, C++
   exceptions...) with deterministic output; it runs under plain `python` and
   under `dynload run -- python`, and the outputs must be identical.
2. mapped by dynload: the dynload run has DYNLOAD_DEBUG=files on; every
   extension module the program imported and every bundled library in
   `*.libs/` that ended up in the process must have been mapped by dynload
   (`file=NAME [0];  generating link map`), and the same extension modules
   must have been imported under glibc.
3. test suites: where the package's own tests run offline after
   `pip install` (shipped in the wheel, or in the sdist, which is downloaded
   with `pip download --no-binary` and whose tests then run against the
   installed wheel, never against the sources), the suite runs under glibc
   and under dynload; pytest's counts (passed, failed, errors, skipped,
   xfailed, xpassed) must be equal, and no test that passes under glibc may
   do otherwise under dynload (every test case is compared).

Everything lives under target/: the virtualenv in target/compat-venv (made
with the python3 running this script, which should be pyenv's CPython 3.11
built with --enable-shared), sdists, test trees, logs and debug output in
target/compat-work. Build dynload first:

    cargo build --release -p dynload-cli -p dynload-capi
    python3 scripts/compat.py --check --json target/compat.json
    python3 scripts/compat.py --readme          # run, then rewrite the README table
    python3 scripts/compat.py --from-json target/compat.json --readme   # no run
    python3 scripts/compat.py --only orjson,numpy --no-suites            # quick look

`--check` exits 1 when glibc and dynload disagree anywhere (or something
that works under glibc does not under dynload). A whole run takes about 11
minutes on a 2-core machine, most of it numpy's and pillow's suites, each
run twice; the subsets chosen to stay within that are documented with each
package's Suite (its `why`), and in the README under the table.
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target"
VENV = TARGET / "compat-venv"
WORK = TARGET / "compat-work"
README = ROOT / "README.md"
BEGIN, END = "<!-- compat:begin -->", "<!-- compat:end -->"

# Everything installed in the virtualenv, pinned (what `pip freeze` showed
# after installing the packages and their test tools on this machine).
# All come as wheels (`--only-binary :all:`): manylinux cp311 or abi3 for the
# extension modules, py3-none-any for the rest.
PINNED = [
    # packages with extension modules
    "cffi==2.1.1", "cryptography==50.0.2", "kiwisolver==1.5.1", "lxml==6.1.3",
    "msgpack==1.2.4", "numpy==2.4.6", "orjson==3.13.0", "pandas==3.1.1",
    "pendulum==3.3.0", "pillow==13.0.0", "psutil==7.2.2",
    "pydantic_core==2.50.5", "rpds-py==2026.9.1",
    # test tools and the test suites' own requirements
    "pytest==9.2.0", "hypothesis==6.170.17", "pytest-benchmark==5.3.1",
    "pytest-mock==3.17.0", "pytest-run-parallel==0.10.0", "pytest-timeout==2.4.0",
    "cryptography_vectors==50.0.2", "pretend==1.0.9", "certifi==2026.10.19.post1",
    "dirty-equals==0.11", "inline-snapshot==0.36.1", "typing-inspection==0.4.5",
    "Faker==40.63.0", "python-dateutil==4.0.0", "pytz==2026.6", "tzdata==2026.6",
    # what those pull in
    "asttokens==3.0.2", "executing==2.3.0", "iniconfig==2.3.1",
    "markdown-it-py==4.3.0", "mdurl==0.1.2", "packaging==26.4", "pluggy==1.7.0",
    "py-cpuinfo2==10.1.1", "pycparser==3.12", "Pygments==2.21.0", "rich==15.0.0",
    "sortedcontainers==2.4.0", "typing_extensions==4.16.0",
]


@dataclass
class Suite:
    """How to run a package's own tests against the installed wheel.

    sdist: copy these paths of the package's sdist into the test tree (None:
    the tests ship in the wheel). runner "pytest" runs `python -m pytest
    ARGS` in the test tree; "unittest" runs UNITTEST_DRIVER on the package
    directory ARGS[0] (for suites written for their own unittest runner).
    """
    args: list
    sdist: list = None
    runner: str = "pytest"
    why: str = ""  # the subset, and why


@dataclass
class Package:
    dist: str          # PyPI name, pinned in PINNED
    kind: str          # what its extension modules are
    modules: list      # extension modules the exercise must import
    exercise: str      # program with deterministic output
    suite: Suite = None

    @property
    def version(self):
        return next(p.split("==")[1] for p in PINNED
                    if norm(p.split("==")[0]) == norm(self.dist))


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


PACKAGES = [
    Package(
        "orjson", "Rust (PyO3)", ["orjson.orjson"],
        """
        import dataclasses, datetime, uuid, orjson
        @dataclasses.dataclass
        class Point:
            x: int
            label: str
        doc = {"list": [1, 2.5, None, True, 2**60], "text": "h\\u00e9llo \\u2603",
               "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
               "id": uuid.UUID(int=12345), "point": Point(3, "p")}
        out = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        print(out.decode())
        print(orjson.loads(out)["list"], orjson.loads(b'{"a":[1e3,"x"]}'))
        try:
            orjson.loads(b'{"a": [1, 2}')
        except orjson.JSONDecodeError as e:
            print("JSONDecodeError:", e)
        """,
        Suite(["test"], sdist=["test", "pyproject.toml"]),
    ),
    Package(
        "pydantic_core", "Rust (PyO3)", ["pydantic_core._pydantic_core"],
        """
        from pydantic_core import SchemaValidator, ValidationError, core_schema as cs, to_json
        v = SchemaValidator(cs.typed_dict_schema({
            "name": cs.typed_dict_field(cs.str_schema(min_length=1)),
            "age": cs.typed_dict_field(cs.int_schema(ge=0)),
            "tags": cs.typed_dict_field(cs.list_schema(cs.str_schema())),
        }))
        print(v.validate_python({"name": "Ada", "age": "36", "tags": ["x", "y"]}))
        print(v.validate_json('{"name": "Bob", "age": 7, "tags": []}'))
        try:
            v.validate_python({"name": "", "age": -1, "tags": [1]})
        except ValidationError as e:
            print(e.error_count(), [(err["type"], err["loc"]) for err in e.errors()])
        print(to_json({"k": [1, 2.5, None]}))
        """,
        Suite(["tests", "--ignore=tests/test_docstrings.py"],
              sdist=["tests", "pyproject.toml"],
              why="tests/test_docstrings.py needs pytest-examples (black, ruff)"),
    ),
    Package(
        "rpds-py", "Rust (PyO3)", ["rpds.rpds"],
        """
        from rpds import HashTrieMap, HashTrieSet, List
        m = HashTrieMap({"a": 1}).insert("b", 2)
        print(sorted(m.items()), m == HashTrieMap(a=1, b=2), m.discard("a") == HashTrieMap(b=2))
        print(sorted(HashTrieSet(range(10)).remove(3)))
        lst = List([1, 2, 3]).push_front(0)
        print(list(lst), lst.rest.first, list(reversed(lst)))
        """,
        Suite(["tests"], sdist=["tests"]),
    ),
    Package(
        "cryptography", "Rust (PyO3, abi3) + OpenSSL (static)", ["cryptography.hazmat.bindings._rust"],
        """
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes, hmac
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        key, nonce = bytes(range(32)), bytes(12)
        sealed = AESGCM(key).encrypt(nonce, b"attack at dawn", b"header")
        print("AES-GCM", sealed.hex(), AESGCM(key).decrypt(nonce, sealed, b"header"))
        try:
            AESGCM(key).decrypt(nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"header")
        except InvalidTag:
            print("tampered: InvalidTag")
        h = hashes.Hash(hashes.SHA256()); h.update(b"abc"); print("SHA-256", h.finalize().hex())
        m = hmac.HMAC(key, hashes.SHA512()); m.update(b"msg"); print("HMAC", m.finalize().hex()[:32])
        sk = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
        sig = sk.sign(b"msg"); sk.public_key().verify(sig, b"msg"); print("Ed25519", sig.hex()[:32])
        """,
        Suite(["tests"], sdist=["tests", "pyproject.toml"]),
    ),
    Package(
        "pendulum", "Rust (PyO3)", ["pendulum._pendulum"],
        """
        import pendulum
        dt = pendulum.datetime(2024, 3, 10, 1, 30, tz="America/New_York")
        print(dt.add(hours=1).isoformat(), dt.add(hours=2).isoformat())
        print(pendulum.parse("2024-02-29T12:00:00+02:00").in_tz("UTC").isoformat())
        print(pendulum.duration(days=3, hours=4).in_words(locale="en"))
        print(pendulum.datetime(2024, 1, 31).add(months=1).to_date_string())
        """,
    ),
    Package(
        "numpy", "C/C++ + OpenBLAS (numpy.libs)",
        ["numpy._core._multiarray_umath", "numpy.linalg._umath_linalg",
         "numpy.fft._pocketfft_umath", "numpy.random._generator"],
        """
        import numpy as np
        rng = np.random.default_rng(12345)
        a, b = rng.standard_normal((300, 300)), rng.standard_normal((300, 300))
        c = a @ b                                   # dgemm in the bundled OpenBLAS
        print("matmul", np.round(c[:2, :3], 6).tolist(), round(float(np.abs(c).sum()), 4))
        x = np.linalg.solve(a, b[:, 0])             # LAPACK dgesv
        print("solve residual < 1e-9:", bool(np.abs(a @ x - b[:, 0]).max() < 1e-9))
        print("eigvalsh", np.round(np.linalg.eigvalsh(a[:4, :4] + a[:4, :4].T), 6).tolist())
        print("fft", np.round(np.fft.fft(np.arange(8.0)), 6).tolist())    # C++ pocketfft
        print("blas", np.__config__.CONFIG["Build Dependencies"]["blas"]["name"])
        print(np.array(["a", "bc"], dtype=np.dtypes.StringDType()).astype("U2"))
        """,
        Suite(["--pyargs", "numpy", "-m", "not slow",
               "--ignore={site}/numpy/f2py",
               "--ignore={site}/numpy/_core/tests/test_mem_policy.py",
               "--ignore={site}/numpy/ma", "--ignore={site}/numpy/polynomial",
               "--ignore={site}/numpy/distutils", "--ignore={site}/numpy/typing",
               "-k", "not (TestStructuredObjectRefcounting or TestAssertNoGcCycles or TestLeaks"
                     " or test_load_refcount or test_reference_cycles or test_structarray_title"
                     " or test_identityless_reduction_huge_array)"],
              why='the tests in the wheel, `-m "not slow"`; not numpy.f2py and '
                  "test_mem_policy (they build modules with meson and a compiler), nor "
                  "numpy.ma, numpy.polynomial, numpy.distutils and numpy.typing (pure Python), nor "
                  "the refcount/leak loops and one huge-array reduction (70 s of a 190 s run)"),
    ),
    Package(
        "kiwisolver", "C++ (libstdc++, exceptions)", ["kiwisolver._cext"],
        """
        import kiwisolver as kiwi
        x1, x2, xm = kiwi.Variable("x1"), kiwi.Variable("x2"), kiwi.Variable("xm")
        s = kiwi.Solver()
        for c in (x1 >= 0, x2 <= 100, x2 >= x1 + 10, xm == (x1 + x2) / 2, (x1 == 40) | "weak"):
            s.addConstraint(c)
        s.addEditVariable(xm, "strong"); s.suggestValue(xm, 60); s.updateVariables()
        print(x1.value(), x2.value(), xm.value())
        # Both are C++ exceptions thrown in the solver and caught in the module.
        try:
            s.addConstraint(x1 >= 200)
        except kiwi.UnsatisfiableConstraint:
            print("UnsatisfiableConstraint")
        try:
            s.addEditVariable(xm, "strong")
        except kiwi.DuplicateEditVariable:
            print("DuplicateEditVariable")
        """,
        Suite(["py/tests"], sdist=["py/tests"]),
    ),
    Package(
        "msgpack", "Cython (C++)", ["msgpack._cmsgpack"],
        """
        import msgpack
        data = {"a": [1, 2**40, -3, 1.5, None, True], "b": b"\\x00\\xff", "c": "\\u00fc"}
        packed = msgpack.packb(data)
        print(packed.hex(), msgpack.unpackb(packed), msgpack.Packer.__module__)
        """,
        Suite(["test"], sdist=["test"]),
    ),
    Package(
        "pillow", "C + 18 libraries (pillow.libs)",
        ["PIL._imaging", "PIL._imagingft", "PIL._imagingcms", "PIL._webp", "PIL._avif"],
        """
        import hashlib, io
        from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageFont, features
        im = Image.new("RGB", (96, 64), (10, 20, 30))
        draw = ImageDraw.Draw(im)
        draw.rectangle((8, 8, 40, 30), fill=(200, 100, 50))
        draw.text((4, 36), "dynload", font=ImageFont.load_default(size=14), fill=(255, 255, 255))
        im = im.filter(ImageFilter.GaussianBlur(1))
        digest = lambda b: hashlib.sha256(b).hexdigest()[:16]
        print("raw", digest(im.tobytes()))
        for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "JPEG2000", "AVIF"):
            buf = io.BytesIO()
            im.save(buf, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP", "AVIF") else {}))
            back = Image.open(io.BytesIO(buf.getvalue())); back.load()
            print(fmt, back.size, back.mode, digest(back.tobytes()))
        srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
        print("lcms", ImageCms.applyTransform(im, ImageCms.buildTransform(srgb, lab, "RGB", "LAB")).getpixel((20, 20)))
        print({f: features.check(f) for f in ("freetype2", "littlecms2", "webp", "avif", "jpg", "zlib")})
        """,
        Suite(["Tests", "-k", "not (TestAvifLeaks or TestDefaultFontLeak or TestTTypeFontLeak)"],
              sdist=["Tests", "conftest.py", "pyproject.toml"],
              why="the tests of the sdist but the three memory-leak loops (15 s of 70 s)"),
    ),
    Package(
        "lxml", "Cython + libxml2/libxslt (static)", ["lxml.etree", "lxml.objectify"],
        """
        from lxml import etree, html, objectify
        root = etree.fromstring(b"<r xmlns:x='urn:x'><x:i n='1'>a</x:i><x:i n='2'>b</x:i></r>")
        print(root.xpath("//x:i[@n='2']/text()", namespaces={"x": "urn:x"}))
        xslt = etree.XSLT(etree.XML(
            '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
            '<xsl:template match="/"><count><xsl:value-of select="count(//*)"/></count></xsl:template>'
            '</xsl:stylesheet>'))
        print(str(xslt(root)).strip())
        print(etree.tostring(html.fromstring("<p>Hi <b>there</p>"), method="html"))
        try:
            etree.fromstring("<a><b></a>")
        except etree.XMLSyntaxError as e:
            print("XMLSyntaxError:", e)
        print(objectify.fromstring("<r><n>41</n></r>").n + 1)
        """,
        Suite(["src/lxml"], sdist=["src/lxml/tests", "doc", "samples"], runner="unittest",
              why="lxml's tests are written for its own unittest runner (test_suite() in each "
                  "module, doctests of doc/*.txt), not for pytest"),
    ),
    Package(
        "pandas", "Cython/C++ (many modules)",
        ["pandas._libs.lib", "pandas._libs.groupby", "pandas._libs.tslibs.timestamps"],
        """
        import io
        import pandas as pd
        df = pd.DataFrame({"k": list("abcab"), "v": [1, 2, 3, 4, 5],
                           "t": pd.date_range("2024-01-01", periods=5, freq="D")})
        print(df.groupby("k")["v"].agg(["sum", "mean"]))
        print(df.set_index("t").resample("2D")["v"].sum())
        print(pd.to_datetime(["2024-01-01 10:00"]).tz_localize("Europe/Paris").tz_convert("UTC"))
        print(pd.read_csv(io.StringIO("a,b\\n1,x\\n2,y")).to_json())
        """,
    ),
    Package(
        "psutil", "C (abi3)", ["psutil._psutil_linux"],
        """
        import os, psutil
        p = psutil.Process(os.getpid())
        print(p.pid == os.getpid(), p.status(), p.cmdline()[-1].endswith(".py"), p.num_threads() >= 1)
        print(psutil.cpu_count() >= 1, psutil.virtual_memory().total > 0, len(p.memory_maps()) > 10)
        """,
    ),
    Package(
        "cffi", "C (libffi inside), dlopen(NULL)", ["_cffi_backend"],
        """
        from cffi import FFI
        ffi = FFI()
        ffi.cdef("size_t strlen(const char *); unsigned long crc32(unsigned long, const unsigned char *, unsigned);")
        libc = ffi.dlopen(None)                     # dlopen(NULL): the global scope
        zlib = ffi.dlopen("libz.so.1")
        print(libc.strlen(b"hello"), hex(zlib.crc32(0, b"hello", 5)))
        cb = ffi.callback("int(int, int)", lambda a, b: a * b)
        print(cb(6, 7), ffi.sizeof("long double"))
        """,
    ),
]

# Runs before each exercise (the exercise is appended): at exit, write which
# extension modules were imported and which bundled libraries (`*.libs/`)
# are mapped, to $COMPAT_REPORT -- never to stdout, which is compared.
EXERCISE_PRELUDE = '''\
import atexit as _atexit, json as _json, os as _os, sys as _sys
def _compat_report():
    modules = {name: _os.path.realpath(m.__file__) for name, m in list(_sys.modules.items())
               if (getattr(m, "__file__", None) or "").endswith(".so")}
    with open("/proc/self/maps") as maps:
        libs = sorted({_os.path.realpath(line.split(None, 5)[5].strip()) for line in maps
                       if len(line.split(None, 5)) == 6 and ".libs/" in line})
    with open(_os.environ["COMPAT_REPORT"], "w") as out:
        _json.dump({"modules": modules, "bundled": libs}, out)
_atexit.register(_compat_report)
del _atexit
'''

# The lxml suite's runner: every tests/test_*.py module's test_suite(), as
# lxml's own test.py collects them; writes each test's outcome as JSON.
UNITTEST_DRIVER = '''\
import importlib, json, os, sys, unittest
package_dir, out_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.abspath(package_dir))
suite = unittest.TestSuite()
for name in sorted(os.listdir(os.path.join(package_dir, "tests"))):
    if name.startswith("test_") and name.endswith(".py"):
        suite.addTests(importlib.import_module("tests." + name[:-3]).test_suite())
class Result(unittest.TextTestResult):
    outcomes = {}
    def _note(self, test, outcome):
        self.outcomes[test.id()] = outcome
    def addSuccess(self, test): super().addSuccess(test); self._note(test, "passed")
    def addFailure(self, test, err): super().addFailure(test, err); self._note(test, "failed")
    def addError(self, test, err): super().addError(test, err); self._note(test, "error")
    def addSkip(self, test, reason): super().addSkip(test, reason); self._note(test, "skipped")
    def addExpectedFailure(self, test, err): super().addExpectedFailure(test, err); self._note(test, "xfailed")
    def addUnexpectedSuccess(self, test): super().addUnexpectedSuccess(test); self._note(test, "xpassed")
result = unittest.TextTestRunner(verbosity=1, resultclass=Result).run(suite)
with open(out_path, "w") as out:
    json.dump(Result.outcomes, out)
sys.exit(not result.wasSuccessful())
'''

COUNT_KEYS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")


# ---------------------------------------------------------------- setup

def log(msg):
    print(msg, flush=True)


def venv_python():
    return VENV / "bin" / "python"


def site_packages():
    return VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def ensure_venv():
    """Create target/compat-venv with this python and install PINNED, unless
    a previous run already installed exactly this list."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        log("warning: %s has no shared libpython (build it with --enable-shared)" % sys.executable)
    if not venv_python().exists():
        log("creating %s" % VENV.relative_to(ROOT))
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / "compat-installed.txt"
    wanted = "# %s %s\n%s\n" % (sys.executable, sys.version.split()[0], "\n".join(PINNED))
    if stamp.exists() and stamp.read_text() == wanted:
        return
    log("installing %d pinned packages" % len(PINNED))
    req = VENV / "compat-requirements.txt"
    req.write_text("\n".join(PINNED) + "\n")
    subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--only-binary", ":all:", "-r", str(req)], check=True)
    stamp.write_text(wanted)


def sdists(cache, pkg):
    """pkg's sdist in cache, if downloaded (NAME-VERSION.tar.gz, NAME spelt
    with - or _)."""
    return [p for p in cache.glob("*.tar.gz")
            if norm(p.name[:-len(".tar.gz")].rpartition("-")[0]) == norm(pkg.dist)
            and p.name[:-len(".tar.gz")].rpartition("-")[2] == pkg.version]


def sdist_tree(pkg):
    """The paths pkg.suite.sdist of pkg's sdist, copied into
    target/compat-work/tests/<dist> (downloaded and extracted once)."""
    dest = WORK / "tests" / norm(pkg.dist)
    stamp = dest / ".compat-extracted"
    wanted = "%s %s" % (pkg.version, " ".join(pkg.suite.sdist))
    if stamp.exists() and stamp.read_text() == wanted:
        return dest
    cache = WORK / "sdist"
    cache.mkdir(parents=True, exist_ok=True)
    found = sdists(cache, pkg)
    if not found:
        log("  downloading the sdist of %s==%s" % (pkg.dist, pkg.version))
        subprocess.run([str(venv_python()), "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--no-deps", "--no-binary", pkg.dist, "-d", str(cache),
                        "%s==%s" % (pkg.dist, pkg.version)], check=True)
        found = sdists(cache, pkg)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(found[0]) as tar:
        top = tar.getnames()[0].split("/")[0]
        members = [m for m in tar.getmembers()
                   if any(m.name == "%s/%s" % (top, p) or m.name.startswith("%s/%s/" % (top, p))
                          for p in pkg.suite.sdist)]
        for m in members:
            m.name = m.name[len(top) + 1:]
        tar.extractall(dest, members=members, filter="data")
    stamp.write_text(wanted)
    return dest


# ---------------------------------------------------------------- running

@dataclass
class Run:
    rc: int
    out: str
    seconds: float
    timed_out: bool = False


def run(cmd, cwd, env_extra=None, timeout=1200, log_path=None):
    """Run cmd in its own process group (killed whole on timeout); stdout
    and stderr together, also written to log_path."""
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (VENV / "bin", env.get("PATH", ""))
    env["VIRTUAL_ENV"] = str(VENV)
    env["PYTHONHASHSEED"] = "0"
    env.update(env_extra or {})
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    text = out.decode("utf-8", "replace")
    if log_path:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("$ %s\n%s" % (" ".join(map(str, cmd)), text))
    return Run(proc.returncode, text, time.monotonic() - start, timed_out)


def dynload_prefix(debug_base):
    """`dynload run` with DYNLOAD_DEBUG=files written to debug_base.PID."""
    for old in debug_base.parent.glob(debug_base.name + ".*"):
        old.unlink()
    debug_base.parent.mkdir(parents=True, exist_ok=True)
    return [str(TARGET / "release" / "dynload"), "run", "--debug", "files",
            "--debug-output", str(debug_base), "--"]


def mapped_by_dynload(debug_base):
    """Names of the objects dynload mapped, from every debug_base.PID file:
    real paths for names with a slash, bare names otherwise."""
    names = set()
    for path in debug_base.parent.glob(debug_base.name + ".*"):
        for m in re.finditer(r"file=(\S+) \[\d+\];  generating link map", path.read_text(errors="replace")):
            names.add(os.path.realpath(m.group(1)) if "/" in m.group(1) else m.group(1))
    return names


def is_mapped(path, names):
    return path in names or os.path.basename(path) in names


# ---------------------------------------------------------------- exercises

def exercise(pkg):
    """Run pkg's exercise under both loaders; compare outputs, imported
    modules, and check dynload mapped every extension and bundled library."""
    d = WORK / "exercise"
    d.mkdir(parents=True, exist_ok=True)
    program = d / ("exercise_%s.py" % norm(pkg.dist).replace("-", "_"))  # never the package's name
    program.write_text(EXERCISE_PRELUDE + textwrap.dedent(pkg.exercise))
    runs, reports = {}, {}
    debug = WORK / "debug" / ("exercise-" + norm(pkg.dist))
    for mode, prefix in (("glibc", []), ("dynload", dynload_prefix(debug))):
        report = d / ("%s.%s.json" % (norm(pkg.dist), mode))
        report.unlink(missing_ok=True)
        runs[mode] = run(prefix + [str(venv_python()), str(program)], cwd=d, timeout=300,
                         env_extra={"COMPAT_REPORT": str(report)},
                         log_path=WORK / "logs" / ("exercise-%s-%s.log" % (norm(pkg.dist), mode)))
        reports[mode] = json.loads(report.read_text()) if report.exists() else {"modules": {}, "bundled": []}
    g, u = runs["glibc"], runs["dynload"]
    problems = []
    if g.rc != 0:
        problems.append("fails under glibc (exit %d)" % g.rc)
    if (u.rc, u.out) != (g.rc, g.out):
        problems.append("dynload's output (exit %d) differs from glibc's (exit %d)" % (u.rc, g.rc))
    gm, um = reports["glibc"]["modules"], reports["dynload"]["modules"]
    problems += ["%s not imported" % m for m in pkg.modules if m not in gm]
    if set(gm) != set(um):
        problems.append("imported modules differ: %s" % sorted(set(gm) ^ set(um)))
    names = mapped_by_dynload(debug)
    not_mapped = [p for p in list(um.values()) + reports["dynload"]["bundled"] if not is_mapped(p, names)]
    problems += ["not mapped by dynload: %s" % p for p in not_mapped]
    # Counted for the table: the package's own modules and libraries (those
    # of packages it imports, such as numpy's for pandas, are checked too).
    tops = {m.split(".")[0] for m in pkg.modules}
    own = [n for n in um if n.split(".")[0] in tops]
    own_libs = [p for p in reports["dynload"]["bundled"]
                if os.path.basename(os.path.dirname(p)) in {t + ".libs" for t in tops | {pkg.dist}}]
    return {
        "ok": not problems, "problems": problems,
        "module_paths": {m: gm[m] for m in pkg.modules if m in gm},
        "extension_modules": len(own), "bundled_libraries": len(own_libs),
        "objects_mapped_by_dynload": len(names),
        "seconds": {"glibc": round(g.seconds, 2), "dynload": round(u.seconds, 2)},
        "output": g.out if g.out == u.out else {"glibc": g.out, "dynload": u.out},
    }


# ---------------------------------------------------------------- test suites

SUMMARY = re.compile(r"^=*\s*((?:\d+ [a-z]+(?: [a-z]+)?(?:, )?)+) in [\d.]+s")


def pytest_counts(out):
    """Counts from pytest's last summary line ('3 failed, 47553 passed, ... in 169.35s')."""
    lines = [l for l in out.splitlines() if SUMMARY.match(l.strip())]
    if not lines:
        return None
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for n, word in re.findall(r"(\d+) ([a-z]+(?: [a-z]+)?)", SUMMARY.match(lines[-1].strip()).group(1)):
        word = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[word] = int(n)
    return counts


# Parts of test ids that change from run to run: object addresses and
# random UUIDs in parametrize ids (pydantic-core's tests have both).
VOLATILE = re.compile(r"0x[0-9a-f]+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
GOOD = ("passed", "skipped", "xfailed", "xpassed")


def stable(outcomes):
    """{test id: outcome} -> {id without volatile parts: Counter of outcomes}."""
    result = collections.defaultdict(collections.Counter)
    for test, outcome in outcomes.items():
        result[VOLATILE.sub("*", test)][outcome] += 1
    return result


def compare_outcomes(glibc, dynload):
    """Test ids whose outcomes differ, and how many tests that end well under
    glibc do not under dynload. Ids found under one loader only (ids that
    still vary, e.g. from a Rust HashMap's order) are compared as one pool."""
    g, u = stable(glibc), stable(dynload)
    both = set(g) & set(u)
    differ = sorted(t for t in both if g[t] != u[t])
    worse = sum(max(0, sum(g[t][k] for k in GOOD) - sum(u[t][k] for k in GOOD)) for t in differ)
    g_only, u_only = collections.Counter(), collections.Counter()
    for t in set(g) - both:
        g_only.update(g[t])
    for t in set(u) - both:
        u_only.update(u[t])
    if g_only != u_only:
        differ += sorted((set(g) | set(u)) - both)
        worse += max(0, sum(g_only[k] for k in GOOD) - sum(u_only[k] for k in GOOD))
    return [(t[:200], dict(g.get(t, {})), dict(u.get(t, {}))) for t in differ], worse


def junit_outcomes(path):
    """{test id: outcome} from pytest's JUnit XML."""
    outcomes = {}
    if not path.exists():
        return outcomes
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        kind = "passed"
        if "error" in tags:
            kind = "error"
        elif "failure" in tags:
            kind = "failed"
        elif "skipped" in tags:
            skipped = next(c for c in case if c.tag == "skipped")
            kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        outcomes["%s::%s" % (case.get("classname"), case.get("name"))] = kind
    return outcomes


def unittest_counts(out):
    ran = re.findall(r"^Ran (\d+) tests? in", out, re.M)
    status = re.findall(r"^(OK|FAILED)(?: \((.*)\))?$", out, re.M)
    if not ran or not status:
        return None
    detail = dict((k, int(v)) for k, v in re.findall(r"(\w[\w ]*)=(\d+)", status[-1][1]))
    counts = {"failed": detail.get("failures", 0), "errors": detail.get("errors", 0),
              "skipped": detail.get("skipped", 0), "xfailed": detail.get("expected failures", 0),
              "xpassed": detail.get("unexpected successes", 0)}
    counts["passed"] = int(ran[-1]) - sum(counts.values())
    return counts


def suite_command(pkg, tree, results):
    s = pkg.suite
    args = [a.format(site=site_packages()) for a in s.args]
    if s.runner == "unittest":
        driver = WORK / "unittest_driver.py"
        driver.write_text(UNITTEST_DRIVER)
        return [str(venv_python()), str(driver), args[0], str(results)]
    config = ["-c", str(tree / "pyproject.toml")] if (tree / "pyproject.toml").exists() else []
    return [str(venv_python()), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tree),
            *config, "--hypothesis-seed=0", "--junitxml", str(results), *args]


def test_suite(pkg, module_paths):
    """Run pkg's suite under both loaders and compare counts and outcomes;
    module_paths (the package's main extension modules) must have been
    mapped by dynload during its run."""
    tree = sdist_tree(pkg) if pkg.suite.sdist else WORK / "tests" / norm(pkg.dist)
    tree.mkdir(parents=True, exist_ok=True)
    res = {"why": pkg.suite.why} if pkg.suite.why else {}
    outcomes = {}
    for mode in ("glibc", "dynload"):
        debug = WORK / "debug" / ("suite-" + norm(pkg.dist))
        prefix = dynload_prefix(debug) if mode == "dynload" else []
        results = WORK / "logs" / ("suite-%s-%s.%s" % (norm(pkg.dist), mode,
                                                      "json" if pkg.suite.runner == "unittest" else "xml"))
        results.unlink(missing_ok=True)
        r = run(prefix + suite_command(pkg, tree, results), cwd=tree,
                log_path=WORK / "logs" / ("suite-%s-%s.log" % (norm(pkg.dist), mode)))
        counts = (unittest_counts if pkg.suite.runner == "unittest" else pytest_counts)(r.out)
        if pkg.suite.runner == "unittest":
            outcomes[mode] = json.loads(results.read_text()) if results.exists() else {}
        else:
            outcomes[mode] = junit_outcomes(results)
        res[mode] = {"counts": counts, "exit": r.rc, "timed_out": r.timed_out, "seconds": round(r.seconds, 1)}
        if mode == "dynload":
            names = mapped_by_dynload(debug)
            res[mode]["objects_mapped_by_dynload"] = len(names)
            not_mapped = [p for p in module_paths.values() if not is_mapped(p, names)]
        log("  %-8s %6.1f s  %s" % (mode, r.seconds, describe(counts) if counts else
                                     "no summary (exit %d%s)" % (r.rc, ", timed out" if r.timed_out else "")))
    differ, worse = compare_outcomes(outcomes["glibc"], outcomes["dynload"])
    problems = []
    gc, uc = res["glibc"]["counts"], res["dynload"]["counts"]
    if gc is None:
        problems.append("no result under glibc")
    if uc is None:
        problems.append("no result under dynload (exit %d)" % res["dynload"]["exit"])
    elif gc and any(gc[k] != uc[k] for k in COUNT_KEYS):
        problems.append("counts differ")
    if worse:
        problems.append("%d tests do worse under dynload" % worse)
    problems += ["not mapped by dynload during the tests: %s" % p for p in not_mapped]
    res.update({"ok": not problems, "problems": problems, "tests_differing": len(differ),
                "differing": differ[:40]})
    return res


def describe(counts):
    if not counts:
        return "-"
    return ", ".join("%d %s" % (counts[k], k) for k in COUNT_KEYS if counts.get(k))


# ------------------------------------------------- native libraries, CPython

# Big C and C++ libraries used through their C APIs by fixtures/big_libraries.c
# (what the tests in crates/*/tests/big_libraries.rs also check).
NATIVE = [
    ("llvm", "libLLVM-15.so.1", "C++ (LLVM 15: IR, verifier, MCJIT)"),
    ("z3", "libz3.so.4", "C++ (Z3 solver)"),
    ("icu", "libicuuc.so.72", "C++ (ICU 72: number formatting, collation)"),
]


def native_libraries():
    """Each library's work under plain glibc and under `dynload run`: the
    same output, and the library mapped by dynload."""
    d = WORK / "native"
    d.mkdir(parents=True, exist_ok=True)
    prog = d / "big_libraries"
    built = run(["gcc", "-O1", "-o", str(prog), str(ROOT / "fixtures" / "big_libraries.c")], cwd=d)
    rows = []
    for which, soname, kind in NATIVE:
        problems = []
        if built.rc != 0:
            problems.append("cannot build fixtures/big_libraries.c: " + built.out[-300:])
        else:
            plain = run([str(prog), which], cwd=d, log_path=d / (which + "-glibc.log"))
            debug = d / ("debug-" + which)
            under = run(dynload_prefix(debug) + [str(prog), which], cwd=d,
                        log_path=d / (which + "-dynload.log"))
            if plain.rc != 0 or under.rc != 0:
                problems.append("exit %d under glibc, %d under dynload" % (plain.rc, under.rc))
            if plain.out != under.out:
                problems.append("different output")
            if not any(os.path.basename(n) == soname for n in mapped_by_dynload(debug)):
                problems.append("%s was not mapped by dynload" % soname)
        real = os.path.realpath("/usr/lib/x86_64-linux-gnu/" + soname)
        rows.append({"library": os.path.basename(real), "kind": kind, "ok": not problems,
                     "problems": problems})
        log("%s: %s" % (soname, "same output, mapped by dynload" if not problems
                        else "PROBLEM: " + "; ".join(problems)))
    return rows


def cpython_suite():
    """CPython's own tests of its extension modules (scripts/cpython_suite.py),
    every test case compared."""
    out = WORK / "cpython-suite.json"
    r = run([sys.executable, str(ROOT / "scripts" / "cpython_suite.py"), "--json", str(out)],
            cwd=ROOT, log_path=WORK / "logs" / "cpython-suite.log")
    log(r.out.strip())
    if not out.exists():
        return {"ok": False, "problems": ["no results"], "tests": [], "glibc": {}, "dynload": {}}
    data = json.loads(out.read_text())
    data["ok"] = r.rc == 0 and not data["differences"]
    return data


# ---------------------------------------------------------------- report

def table(results):
    rows = ["| package | version | kind | exercise | extension modules (mapped by dynload) "
            "| tests under glibc | tests under dynload |",
            "|---|---|---|---|---|---|---|"]
    for r in results["packages"]:
        ex = r["exercise"]
        exercise = "same output" if ex["ok"] else "**problem**"
        mods = "%d" % ex["extension_modules"] + (" + %d in `.libs`" % ex["bundled_libraries"]
                                                 if ex["bundled_libraries"] else "")
        suite = r.get("suite")
        if suite:
            g, u = describe(suite["glibc"]["counts"]), describe(suite["dynload"]["counts"])
            if not suite["ok"]:
                u = "**%s**" % u
        else:
            g = u = "(not run)" if r.get("has_suite") else "(exercise only)"
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["package"], r["version"], r["kind"], exercise, mods, g, u))
    return "\n".join(rows)


def native_table(results):
    rows = ["| library | kind | under glibc and under `dynload run` |", "|---|---|---|"]
    for r in results.get("native", []):
        rows.append("| %s | %s | %s |" % (r["library"], r["kind"], "same output, mapped by dynload"
                                          if r["ok"] else "**" + "; ".join(r["problems"]) + "**"))
    return "\n".join(rows)


def cpython_line(results):
    c = results.get("cpython")
    if not c:
        return []
    g = ", ".join("%d %s" % (n, k) for k, n in sorted(c["glibc"].items()))
    u = ", ".join("%d %s" % (n, k) for k, n in sorted(c["dynload"].items()))
    return ["CPython %s's own tests of its extension modules (`scripts/cpython_suite.py`, %d test "
            "modules: %s): under glibc %s; under dynload %s; %s." % (
                results["python"], len(c["tests"]), ", ".join(c["tests"]), g, u,
                "every test case with the same outcome" if c["ok"] else
                "**%d test cases differ**" % len(c.get("differences", []))), ""]


def readme_section(results):
    notes = ["- %s: %s" % (r["package"], r["suite"]["why"])
             for r in results["packages"] if r.get("suite", {}).get("why")]
    return "\n".join([
        "Generated by `python3 scripts/compat.py --readme` (%s, CPython %s, %s; %.0f s)."
        % (results["date"], results["python"], results["dynload"], results["seconds"]),
        "Each package's exercise ran under glibc and under `dynload run` with the same output, "
        "and every extension module and bundled library it loaded was mapped by dynload. "
        "Test suites are the packages' own, run against the installed wheels:",
        "",
        table(results),
        "",
        *notes,
        "",
        *cpython_line(results),
        "Big C and C++ libraries, used through their C APIs by `fixtures/big_libraries.c`:",
        "",
        native_table(results),
    ])


def write_readme(results):
    text = README.read_text()
    if BEGIN not in text or END not in text:
        log("\nREADME.md has no %s / %s markers; not edited. The table:\n" % (BEGIN, END))
        log(readme_section(results))
        log("\nAdd the two markers where the table belongs and run with --readme again "
            "(--from-json PATH reuses a run's results).")
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text("%s%s\n%s\n%s%s" % (head, BEGIN, readme_section(results), END, tail))
    log("README.md: compatibility table rewritten")


# ---------------------------------------------------------------- main

def run_all(selected, suites):
    for binary in (TARGET / "release" / "dynload", TARGET / "release" / "libdynload.so"):
        if not binary.exists():
            sys.exit("%s is missing: cargo build --release -p dynload-cli -p dynload-capi" % binary)
    start = time.monotonic()
    ensure_venv()
    shutil.rmtree(WORK / "exercise", ignore_errors=True)
    version = run([str(TARGET / "release" / "dynload"), "--version"], cwd=ROOT).out.strip()
    results = {"date": time.strftime("%Y-%m-%d"), "python": sys.version.split()[0],
               "dynload": version or "dynload", "packages": []}
    for pkg in selected:
        log("%s %s" % (pkg.dist, pkg.version))
        entry = {"package": pkg.dist, "version": pkg.version, "kind": pkg.kind,
                 "has_suite": pkg.suite is not None}
        entry["exercise"] = exercise(pkg)
        ex = entry["exercise"]
        if ex["ok"]:
            log("  exercise: same output; %d extension modules, %d bundled libraries, all mapped by dynload"
                % (ex["extension_modules"], ex["bundled_libraries"]))
        else:
            log("  exercise PROBLEM:\n    " + "\n    ".join(ex["problems"]))
        if suites and pkg.suite:
            entry["suite"] = test_suite(pkg, ex["module_paths"])
            if not entry["suite"]["ok"]:
                log("  SUITE PROBLEM: %s" % "; ".join(entry["suite"]["problems"]))
                for t, g, u in entry["suite"]["differing"][:10]:
                    log("    %s: glibc %s, dynload %s" % (t, g, u))
        results["packages"].append(entry)
    if len(selected) == len(PACKAGES):
        results["native"] = native_libraries()
        if suites:
            results["cpython"] = cpython_suite()
    results["seconds"] = round(time.monotonic() - start, 1)
    return results


def summary(results):
    bad = []
    for r in results["packages"]:
        if not r["exercise"]["ok"]:
            bad.append("%s exercise: %s" % (r["package"], "; ".join(r["exercise"]["problems"])))
        if r.get("suite") and not r["suite"]["ok"]:
            bad.append("%s tests: %s" % (r["package"], "; ".join(r["suite"]["problems"])))
    for r in results.get("native", []):
        if not r["ok"]:
            bad.append("%s: %s" % (r["library"], "; ".join(r["problems"])))
    if results.get("cpython") and not results["cpython"]["ok"]:
        bad.append("CPython's own tests: %d test cases differ"
                   % len(results["cpython"].get("differences", [])))
    log("\n" + table(results))
    if results.get("native"):
        log("\n" + native_table(results))
    log("\n%d packages, %.0f s. %s" % (len(results["packages"]), results["seconds"],
                                        "glibc and dynload agree everywhere." if not bad else
                                        "DIFFERENCES:\n  " + "\n  ".join(bad)))
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 on any difference between glibc and dynload")
    ap.add_argument("--json", metavar="PATH", help="write the results to PATH")
    ap.add_argument("--readme", action="store_true", help="rewrite the README table between the compat markers")
    ap.add_argument("--from-json", metavar="PATH", help="use a previous run's results instead of running")
    ap.add_argument("--only", metavar="PKG,...", help="only these packages (PyPI names)")
    ap.add_argument("--no-suites", action="store_true", help="exercises only, no test suites")
    args = ap.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        selected = PACKAGES
        if args.only:
            wanted = {norm(n) for n in args.only.split(",")}
            selected = [p for p in PACKAGES if norm(p.dist) in wanted]
            unknown = wanted - {norm(p.dist) for p in selected}
            if unknown:
                sys.exit("unknown packages: %s" % ", ".join(sorted(unknown)))
        results = run_all(selected, not args.no_suites)
    ok = summary(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.readme and (args.only or args.no_suites):
        log("not rewriting the README from a partial run (--only, --no-suites)")
    elif args.readme:
        write_readme(results)
    if args.check and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
