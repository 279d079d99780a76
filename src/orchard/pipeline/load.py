"""Find the input files and load image bytes with Spark, labels taken from the folder layout.

Layouts: `<root>/<Split>/<Class>/<image>` (Fruits-360) or `<root>/<Class>/<image>`.
Any Hadoop filesystem works (local, hdfs://, s3a://, EMRFS s3://). Every listed file is
accounted for: Spark's `binaryFile` scan silently skips zero-byte files, so orchard lists the
files itself (Spark's file index) and reports those the scan did not return. Names starting
with `_` or `.` are hidden to Spark and Hadoop (e.g. `_SUCCESS`, `.DS_Store`): not part of the
dataset, not counted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional
from urllib.parse import unquote, urlparse

from orchard.errors import OrchardError
from orchard.paths import is_local_uri
from orchard.pipeline.preprocess import IMAGE_EXTENSIONS, is_image_name
from orchard.pipeline.sessions import bind, child_session
from orchard.spark.session import task_cpus, total_cores
from orchard.storage.fs import Storage

log = logging.getLogger(__name__)

SCAN_OPEN_COST_BYTES = 64 * 1024
OPEN_COST_KEY = "spark.sql.files.openCostInBytes"
DISCOVERY_THRESHOLD_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"

# Hadoop glob matching image names in any letter case: *.{[jJ][pP][gG],...}
IMAGE_GLOB = "*.{" + ",".join(
    "".join(f"[{c.lower()}{c.upper()}]" for c in ext.lstrip(".")) for ext in IMAGE_EXTENSIONS
) + "}"


@dataclass
class Listing:
    """Every file found under the input root (paths relative to it), images and ignored files."""

    root_uri: str  # the qualified root as Spark's `path` column spells it (unescaped)
    images: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.images) + len(self.ignored)


def relative_to(root_uri: str, file_uri: str) -> str:
    """Path of `file_uri` (an escaped URI) below `root_uri`, unescaped, with '/' separators."""
    root = unquote(urlparse(root_uri).path).rstrip("/")
    full = unquote(urlparse(file_uri).path)
    if not full.startswith(root + "/"):
        raise OrchardError(f"internal: {full} is not below the input root {root}")
    return full[len(root) + 1 :]


def _binary_files(spark, uri: str, glob: str = "*", conf: Optional[Dict[str, str]] = None):
    """Spark's binaryFile scan of `uri`, read by a child session with `conf` set (the caller's
    session is left as it was; the scan keeps the child's settings: see pipeline.sessions)."""
    settings = dict(conf or {})
    if is_local_uri(uri):  # a local disk lists faster on the driver than in a Spark job
        settings[DISCOVERY_THRESHOLD_KEY] = "1000000"
    session = child_session(spark, settings) if settings else spark
    reader = session.read.format("binaryFile").option("recursiveFileLookup", "true")
    return reader.option("pathGlobFilter", glob).load(uri)


def _input_files(spark, frame) -> List[str]:
    """`frame.inputFiles()`, fetched as one string: py4j would fetch a Java array item by
    item (0.7 s for 6,480 names, minutes for millions)."""
    names = frame._jdf.inputFiles()
    joined = _wrap_array(spark.sparkContext._jvm, names).mkString("\n")
    files = joined.split("\n") if joined else []
    return files if len(files) == len(names) else list(names)  # a name with a newline in it


def _wrap_array(jvm, array):
    """A Java array as a Scala sequence (no copy): WrappedArray in Scala 2.12 (Spark 3.5),
    mutable.ArraySeq in Scala 2.13 (Spark 4), where WrappedArray is only a type alias. Both
    `make` methods take an Object, which py4j can pass a String[] to (not to an Object[])."""
    from py4j.java_gateway import JavaClass

    wrapped = jvm.scala.collection.mutable.WrappedArray
    if isinstance(wrapped, JavaClass):
        return wrapped.make(array)
    return jvm.scala.collection.mutable.ArraySeq.make(array)


def list_input(spark, uri: str) -> Listing:
    """List every file below `uri`, recursively, with Spark's own file index.

    Spark (and Hadoop) treat names starting with `_` or `.` as hidden: they are not part of
    the dataset and not counted. Zero-byte files are listed (Spark's scan would skip them).
    """
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise OrchardError(f"input not found: {uri}")
    if not fs.getFileStatus(path).isDirectory():
        raise OrchardError(f"input must be a folder of class folders, got a file: {uri}")
    qualified = fs.makeQualified(path)
    listing = Listing(root_uri=str(qualified.toString()))
    root_as_uri = str(qualified.toUri().toString())
    for file_uri in _input_files(spark, _binary_files(spark, uri)):
        relative = relative_to(root_as_uri, file_uri)
        (listing.images if is_image_name(relative) else listing.ignored).append(relative)
    if not listing.images:
        raise OrchardError(
            f"no images under {uri} ({listing.found} files found, none ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}); expected <root>/<Split>/<Class>/<image>"
        )
    listing.images.sort()
    listing.ignored.sort()
    log.info("found %d files under %s: %d images, %d ignored",
             listing.found, listing.root_uri, len(listing.images), len(listing.ignored))
    return listing


def file_size(spark, uri: str) -> int:
    """Size in bytes of one file (any filesystem Spark reads); -1 when it is gone."""
    try:
        return Storage(spark=spark).size(uri)
    except FileNotFoundError:
        return -1


def with_label_and_split(frame):
    """Add `label` and `split` from the relative `path`: Split/Class/img, or Class/img (no split)."""
    from pyspark.sql import functions as F

    parts = F.split("path", "/")
    depth = F.size(parts)
    return frame.withColumn(
        "label", F.when(depth >= 3, parts[1]).when(depth == 2, parts[0])
    ).withColumn("split", F.when(depth >= 3, parts[0]))


def read_images(spark, listing: Listing, partitions: int):
    """DataFrame(path, label, split, content) of the images, in `partitions` parts.

    Zero-byte images are not in it: Spark's scan skips them (the pipeline reports them).
    """
    from pyspark.sql import functions as F

    # Spark counts 4 MB per opened file when it packs files into scan tasks: with small images
    # that makes hundreds of tiny scan tasks. Count a small image's real cost instead (in the
    # scan's own session: the file relation keeps it); the repartition below spreads the
    # images over the cores anyway.
    prefix_length = len(listing.root_uri.rstrip("/")) + 1
    raw = bind(_binary_files(spark, listing.root_uri, IMAGE_GLOB, {OPEN_COST_KEY: str(SCAN_OPEN_COST_BYTES)}), spark)
    relative = raw.select(
        F.expr(f"substring(path, {prefix_length + 1})").alias("path"), "content"
    )
    return with_label_and_split(relative).select("path", "label", "split", "content").repartition(partitions)


def planned_cores(spark) -> int:
    """Task slots the application will have: the cores registered now, or what it was given
    (`spark.cores.max`; `spark.executor.instances` x `spark.executor.cores`) when that is more,
    since executors may still be starting when the partitions are chosen (and a standalone
    master's defaultParallelism is never below 2)."""
    conf = spark.sparkContext.getConf()

    def number(key: str) -> int:
        try:
            return int(float(conf.get(key, "0") or 0))
        except ValueError:
            return 0

    registered = total_cores(spark)
    given = number("spark.cores.max") or number("spark.executor.instances") * number("spark.executor.cores")
    if conf.get("spark.master", "").startswith("local") or not given:
        return registered
    return max(1, given // max(1, task_cpus(spark)))


def choose_partitions(n_images: int, total_cores: int, waves: int = 2, min_per_task: int = 32,
                      max_per_task: int = 2000) -> int:
    """Partitions for `n_images` on `total_cores` task slots, so that no core idles while
    another works through a long tail:

    - a whole number of waves (a multiple of the cores): no last, partial wave that a few
      cores run while the others wait;
    - `waves` waves (2), so that one slow task (a busy node, an executor that registered late)
      is balanced by the other cores taking more tasks; not more, because the first task on
      each core also pays the Python worker's warm-up (imports, the model fetched, loaded and
      run once: 5-15 s on a busy 2-core machine), and tasks much shorter than that make the
      first wave several times longer than the others (skew) for no gain in balance;
    - at least `min_per_task` images a task (a task has a fixed cost: scheduling, Arrow
      set-up); fewer images than that on every core: fewer tasks than cores;
    - more waves when a task would get more than `max_per_task` images, so that a task (and
      its retry) stays short on large inputs.
    """
    cores = max(1, total_cores)
    worth = max(1, n_images // max(1, min_per_task))  # tasks big enough to be worth their cost
    if worth < cores:
        return worth
    full_waves = min(waves, worth // cores)
    full_waves = max(full_waves, -(-n_images // (cores * max_per_task)))
    return cores * max(1, full_waves)


def load_images(spark, uri: str, partitions: Optional[int] = None):
    """The images below `uri` as a DataFrame(path string, label string, split string, content binary).

    `uri`: a folder, hdfs:///path, s3a://bucket/prefix (any Hadoop filesystem), laid out as
    `<root>/<Split>/<Class>/<image>` (Fruits-360) or `<root>/<Class>/<image>`. `path` is
    relative to the root with `/` separators and real characters (not URL-escaped); `label`
    the class folder; `split` the folder above it (null in the 2-level layout); `content` the
    file's bytes. Images are .jpg/.jpeg/.png in any letter case (other files are left out);
    zero-byte files are not in it (Spark's scan skips them; `orchard.run` reports them as errors).

    Lazy: the files are read when an action runs, in `partitions` partitions (default: from
    the image and core counts, see choose_partitions). The scan's own Spark settings apply to
    it only; the caller's session is not changed.

    Raises OrchardError when `uri` does not exist, is a file, or holds no image.
    """
    listing = list_input(spark, uri)
    count = partitions or choose_partitions(len(listing.images), planned_cores(spark))
    return read_images(spark, listing, count)
