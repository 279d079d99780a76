"""`orchard doctor`: is this machine ready? Java, Spark, native BLAS, the model, free memory,
the JVM packages fetched from Maven Central (each with its version and sha256)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.local import deps as localdeps
from orchard.names import DEFAULT_MODEL
from orchard.paths import file_digest
from orchard.pipeline.models import PACKAGED_DIR, resolve_model
from orchard.spark import maven
from orchard.spark.delta import delta_set
from orchard.spark.session import MIN_JAVA, check_java

HELP = ("check the install: Java, Spark starts, native BLAS, model checksum, free memory, "
        "the fetched jars and their checksums")
EPILOG = """\
each line: OK, WARN (works, but slower or tighter than it could be) or FAIL, with what to do.
jars: each jar set the local cluster uses (s3a, HDFS), its root jars with version and sha256
(--jars: every jar of the set); a set not fetched yet is named with the command that fetches it.
exit status: 0 when nothing failed, 1 otherwise. scripts/setup.sh ends with this command.
"""
OK, WARN, FAIL = "OK", "WARN", "FAIL"
BLAS_PACKAGES = "libopenblas0-pthread liblapack3"
MIN_MEMORY_GIB, GOOD_MEMORY_GIB = 1.0, 4.0


@dataclass
class Check:
    """One line of the doctor's answer."""

    name: str
    status: str  # OK, WARN or FAIL
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<8} {self.detail}"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help=HELP, description=HELP, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jars", action="store_true",
                        help="list every jar of each set (not only its roots) with version and sha256")
    parser.set_defaults(func=doctor_command)


def check_java_line() -> Check:
    try:
        return Check("java", OK, f"Java {check_java()}")
    except OrchardError as error:
        return Check("java", FAIL, str(error))


def check_model_line() -> Check:
    try:
        _, path, digest = resolve_model(DEFAULT_MODEL)
    except OrchardError as error:
        return Check("model", FAIL, f"{error}; reinstall orchard (the package ships the model)")
    where = "packaged" if path.parent == PACKAGED_DIR else str(path)
    return Check("model", OK, f"{DEFAULT_MODEL} sha256 {digest[:12]}... matches ({where})")


def available_memory_gib() -> Optional[float]:
    """Memory available to new processes (GiB), or None when the system does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_line() -> Check:
    gib = available_memory_gib()
    if gib is None:
        return Check("memory", WARN, "could not read the free memory; Spark needs about 1 GiB")
    if gib < MIN_MEMORY_GIB:
        return Check("memory", FAIL, f"{gib:.1f} GiB available; Spark needs about {MIN_MEMORY_GIB:.0f} GiB: "
                                     "close other programs")
    if gib < GOOD_MEMORY_GIB:
        return Check("memory", WARN, f"{gib:.1f} GiB available; large runs want {GOOD_MEMORY_GIB:.0f} GiB "
                                     "or more (or fewer cores: --master local[2])")
    return Check("memory", OK, f"{gib:.1f} GiB available")


def native_blas_class(spark) -> Tuple[str, str]:
    """Class names of the BLAS and LAPACK instances Spark's MLlib uses (netlib, via the JVM)."""
    netlib = spark.sparkContext._jvm.dev.ludovic.netlib
    return (netlib.blas.BLAS.getInstance().getClass().getName(),
            netlib.lapack.LAPACK.getInstance().getClass().getName())


def blas_line(blas: str, lapack: str) -> Check:
    """JNIBLAS/JNILAPACK: native libraries found; otherwise the Java fallbacks (slower PCA)."""
    if "JNI" in blas and "JNI" in lapack:
        return Check("blas", OK, f"native BLAS/LAPACK ({blas.rsplit('.', 1)[-1]}, {lapack.rsplit('.', 1)[-1]})")
    return Check("blas", WARN, f"no native BLAS/LAPACK (Spark uses {blas.rsplit('.', 1)[-1]}): PCA is 3-5x "
                               f"slower; install it: sudo apt-get install {BLAS_PACKAGES}")


def spark_checks() -> List[Check]:
    """Start Spark (local[1]), run a job, ask netlib which BLAS it loaded; the two lines."""
    # orchard.api imports pyspark: deferred, so that the CLI starts without it
    from orchard.api import start_spark, stop_spark

    try:
        spark = start_spark("local[1]", app_name="orchard-doctor")
    except Exception as error:  # OrchardError or a JVM that would not start: say it, go on
        return [Check("spark", FAIL, f"Spark did not start: {error}"),
                Check("blas", FAIL, "not checked (Spark did not start)")]
    try:
        rows = spark.range(100).count()
        lines = [Check("spark", OK if rows == 100 else FAIL, f"Spark {spark.version} started, a job ran")]
        try:
            lines.append(blas_line(*native_blas_class(spark)))
        except Exception as error:  # py4j: the classes are Spark's own; say what happened
            lines.append(Check("blas", WARN, f"could not ask Spark which BLAS it uses: {error}"))
        return lines
    finally:
        stop_spark(spark)


def jar_set_lines(jar_set: maven.JarSet, every_jar: bool = False) -> List[Check]:
    """One line per root jar of a fetched set (version, sha256 checked against the manifest),
    or per jar with `every_jar`; FAIL for a jar whose bytes changed since it was fetched."""
    jars = maven.read_manifest(jar_set)
    if jars is None:
        return [Check("jars", OK, f"{jar_set.name}: {', '.join(jar_set.artifacts)} not fetched yet "
                                  f"({jar_set.purpose}): `orchard local fetch` or `orchard local up` fetches it")]
    shown = jars if every_jar else [jar for jar in jars if jar.coordinate in jar_set.roots]
    lines = []
    for jar in shown:
        if file_digest(jar.path) != jar.sha256:
            lines.append(Check("jars", FAIL, f"{jar_set.name}: {jar.path} changed since it was fetched: "
                                             "delete it, then run `orchard local fetch`"))
        else:
            lines.append(Check("jars", OK, f"{jar_set.name}: {jar.coordinate} sha256 {jar.sha256[:12]}..."))
    if not every_jar:
        lines[-1].detail += f" (+{len(jars) - len(shown)} dependencies: --jars lists them)"
    return lines


def jar_lines(every_jar: bool = False) -> List[Check]:
    """The lines of every jar set: Delta Lake's (every Spark session), the local cluster's."""
    try:
        sets = [delta_set(), *localdeps.jar_sets()]
    except OrchardError as error:
        return [Check("jars", WARN, str(error))]
    return [line for jar_set in sets for line in jar_set_lines(jar_set, every_jar)]


def run_checks(every_jar: bool = False) -> List[Check]:
    """All checks, in order; Spark is started only when Java is there."""
    lines = [check_java_line()]
    if lines[0].status == FAIL:
        lines += [Check("spark", FAIL, f"not checked: Spark needs Java {MIN_JAVA}+"),
                  Check("blas", FAIL, "not checked (no Java)")]
    else:
        lines += spark_checks()
    return lines + [check_model_line(), check_memory_line(), *jar_lines(every_jar)]


def doctor_command(args: argparse.Namespace) -> int:
    lines = run_checks(args.jars)
    for check in lines:
        print(check.line(), flush=True)
    failed = [check.name for check in lines if check.status == FAIL]
    print(f"doctor: {'FAILED: ' + ', '.join(failed) if failed else 'ready'}")
    return 1 if failed else 0
