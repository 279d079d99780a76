"""Find the input files and load image bytes with Spark, labels taken from the folder layout.

Layouts: `<root>/<Split>/<Class>/<image>` (Fruits-360) or `<root>/<Class>/<image>`.
Any Hadoop filesystem works (local, hdfs://, s3a://, EMRFS s3://). Every listed file is
accounted for: orchard lists the files itself (the local disk through Python, following
symbolic links once; other filesystems through orchard.storage), the root taken literally (no
glob), and reads exactly those files: a local disk's in the featurizer's Python workers (their
paths, image_locations), other filesystems' through Spark's `binaryFile` scan (read_images). What cannot be read (empty
files, which the scan skips silently, files over its size limit, dangling links, link loops,
images outside class folders) becomes error rows with a reason. One hidden rule: a file is
hidden when any part of its path below the root starts with `_` or `.` (e.g. `_SUCCESS`,
`.DS_Store`, `_metadata`): not part of the dataset, not counted.
"""
from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from orchard.errors import OrchardError
from orchard.paths import is_local_uri, local_path
from orchard.pipeline.preprocess import IMAGE_EXTENSIONS, is_image_name
from orchard.pipeline.sessions import bind, child_session
from orchard.spark.session import task_cpus, total_cores
from orchard.storage.fs import HIDDEN_PREFIXES, LocalFiles, Storage, is_hidden

log = logging.getLogger(__name__)

SCAN_OPEN_COST_BYTES = 64 * 1024
OPEN_COST_KEY = "spark.sql.files.openCostInBytes"
DISCOVERY_THRESHOLD_KEY = "spark.sql.sources.parallelPartitionDiscovery.threshold"

GLOB_PATHS_OPTION = "__globPaths__"  # Spark's option: "false" takes the paths literally
# Local files read without Hadoop's checksum layer: it builds a `.name.crc` path from each
# name, and a colon in the name then parses as a URI scheme (URISyntaxException).
RAW_LOCAL_FILES = {"fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem", "fs.file.impl.disable.cache": "true"}
MAX_LENGTH_KEY = "spark.sql.sources.binaryFile.maxLength"
MAX_BINARY_FILE_BYTES = 2**31 - 1  # a Java byte array: the most the binaryFile reader returns
EMPTY_FILE_REASON = "empty file (0 bytes)"


LISTING_COLUMNS = ("path", "size", "mtime_ms", "problem")
IGNORED_SAMPLE = 100  # ignored file names a listing keeps (the first ones, sorted); all are counted
LISTING_BATCH = 50_000  # entries gathered in Python lists before they become one Arrow batch


@dataclass
class Listing:
    """Every file found under the input root (paths relative to it): the images, and a count of
    the ignored files.

    The images are one Arrow table (`table`, in listing order: path string, size int64 bytes,
    mtime_ms int64 ms since the epoch, problem string), compact whatever the file count: a
    problem is why an image is an error row without being read (a dangling link, a stray
    image, an empty or too large file), null for the images Spark reads. `ignored` holds the
    first IGNORED_SAMPLE ignored names (sorted), `ignored_count` all of them; `split_layout`
    the layout decided once for the whole input (see decide_layout).
    """

    root_uri: str  # the qualified root as Spark's `path` column spells it (unescaped)
    table: Any = None  # pyarrow.Table, LISTING_COLUMNS
    ignored: List[str] = field(default_factory=list)
    ignored_count: int = 0
    split_layout: bool = False

    @property
    def n_images(self) -> int:
        return self.table.num_rows

    @property
    def found(self) -> int:
        return self.n_images + self.ignored_count

    @property
    def images(self) -> List[str]:
        """Every image's relative path, sorted (a Python list: for small inputs and tests)."""
        return sorted(self.table.column("path").to_pylist())

    @property
    def problems(self) -> Dict[str, str]:
        """relative path -> reason, for the images that are error rows without being read."""
        import pyarrow.compute as pc

        rows = self.table.filter(pc.is_valid(self.table["problem"]))
        return dict(zip(rows.column("path").to_pylist(), rows.column("problem").to_pylist()))

    @property
    def readable_table(self):
        """pyarrow.Table(path, size, mtime_ms) of the images Spark reads, in listing order (no
        copy when every image is readable)."""
        import pyarrow.compute as pc

        columns = ["path", "size", "mtime_ms"]
        if self.table["problem"].null_count == self.table.num_rows:
            return self.table.select(columns)
        return self.table.filter(pc.is_null(self.table["problem"])).select(columns)

    @property
    def n_readable(self) -> int:
        """How many images Spark reads: those without a problem (a null `problem`)."""
        return self.table["problem"].null_count

    @property
    def readable(self) -> List[str]:
        """The images Spark reads (not already error rows), sorted (a Python list)."""
        return sorted(self.readable_table.column("path").to_pylist())

    @property
    def largest_image(self) -> int:
        """The largest readable image's size in bytes (0 when none)."""
        import pyarrow.compute as pc

        largest = pc.max(self.readable_table["size"]).as_py()
        return int(largest or 0)

    def uri(self, path: str) -> str:
        """The URI Spark reads the image `path` (relative) from (see file_uri)."""
        return file_uri(self.root_uri, path)


@dataclass(frozen=True)
class Entry:
    """One file (or link standing where a file or folder should be) found below the root."""

    relative: str  # '/' separators, real characters
    size: int  # bytes; -1 for an entry that cannot be read (see problem)
    mtime_ms: int = 0  # modification time, ms since the epoch (of a link's target)
    problem: Optional[str] = None  # why it is an error row without being read


def file_uri(root_uri: str, relative: str) -> str:
    """The URI of `relative` below `root_uri` (qualified, unescaped), spelled so that Hadoop's
    Path(String) takes it literally: its scheme first, so that a colon in a name is not read
    as a scheme; with Spark's glob off, '[', '*', '{' and '%' are plain characters."""
    return f"{root_uri.rstrip('/')}/{relative}"


def walk_local(root: Path) -> Iterator[Entry]:
    """Every non-hidden entry below the local folder `root`, following symbolic links.

    A link to a file is read as the file. A dangling link is an entry with a problem. A link
    to a folder is followed once: a link back to a folder above it (a loop) or to a folder
    already listed is an entry with a problem, never followed, so each file is listed once.
    """
    visited = {os.path.realpath(root)}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda child: child.name)
        except OSError as error:
            yield Entry(prefix.rstrip("/"), -1, problem=f"folder not readable: {error.strerror}")
            continue
        for child in children:
            if child.name.startswith(HIDDEN_PREFIXES):
                continue
            relative = prefix + child.name
            link = child.is_symlink()
            target = os.readlink(child.path) if link else ""
            if link and not os.path.exists(child.path):
                yield Entry(relative, -1, problem=f"dangling symbolic link (-> {target})")
            elif child.is_dir():
                real = os.path.realpath(child.path)
                if real in visited:
                    yield Entry(relative, -1, problem=f"symbolic link loop (-> {target}): a folder already "
                                              "listed, not followed" if link else "folder listed twice")
                    continue
                visited.add(real)
                pending.append((Path(child.path), relative + "/"))
            elif child.is_file():
                stat = child.stat()
                yield Entry(relative, stat.st_size, stat.st_mtime_ns // 1_000_000)


def _list_entries(spark, uri: str) -> Tuple[str, Iterator[Entry]]:
    """(qualified root as Spark spells it, its entries): the local disk through Python (links
    handled, see walk_local), other filesystems through orchard.storage (no glob: the root is
    literal). Raises OrchardError when the root is missing or a file."""
    storage = Storage(spark=spark)
    if isinstance(storage.backend(uri), LocalFiles):
        root = local_path(uri).absolute()
        if not root.exists():
            raise OrchardError(f"input not found: {uri}")
        if not root.is_dir():
            raise OrchardError(f"input must be a folder of class folders, got a file: {uri}")
        return f"file:{os.path.normpath(str(root))}", walk_local(root)
    if not storage.exists(uri):
        raise OrchardError(f"input not found: {uri}")
    if not storage.is_dir(uri):
        raise OrchardError(f"input must be a folder of class folders, got a file: {uri}")
    root_uri = storage.qualify(uri).rstrip("/")
    return root_uri, (Entry(info.name, info.size, info.mtime_ms or 0)
                      for info in storage.iter_files(uri) if not is_hidden(info.name))


def size_limit(spark) -> int:
    """Largest file Spark's binaryFile reader returns: spark.sql.sources.binaryFile.maxLength
    when set, and never above 2 GB - 1 (a Java array), in bytes."""
    try:
        setting = int(spark.conf.get(MAX_LENGTH_KEY, str(MAX_BINARY_FILE_BYTES)))
    except ValueError:
        setting = MAX_BINARY_FILE_BYTES
    return min(setting, MAX_BINARY_FILE_BYTES)


def decide_layout(images: List[str]) -> bool:
    """The layout of the whole input, decided once: True (split folders,
    `<Split>/<Class>/.../<image>`) when any image lies 3 or more levels down, else False
    (`<Class>/<image>`)."""
    return any(path.count("/") >= 2 for path in images)


def stray_reason(relative: str, split_layout: bool) -> Optional[str]:
    """Why an image does not fit the layout (None when it does)."""
    depth = relative.count("/") + 1
    if depth == 1:
        return _stray_reasons(split_layout)[1]
    if split_layout and depth == 2:
        return _stray_reasons(split_layout)[2]
    return None


def _stray_reasons(split_layout: bool) -> Dict[int, str]:
    """depth -> why an image that deep does not fit the layout."""
    where = "<root>/<Split>/<Class>/" if split_layout else "<root>/<Class>/"
    reasons = {1: f"image outside a class folder: images must be in {where}"}
    if split_layout:
        reasons[2] = ("image outside a class folder: this input has split folders, images must be in "
                      "<root>/<Split>/<Class>/")
    return reasons


def list_input(spark, uri: str) -> Listing:
    """List every file below `uri`, recursively; the root is a literal path (no glob).

    Hidden names (any part of the relative path starting with `_` or `.`) are not part of
    the dataset and not counted. Images are files with an extension in IMAGE_EXTENSIONS; the
    others are ignored (counted). Images that cannot be read (dangling links, link loops,
    images outside class folders, empty files, files over the size limit) are listed with
    their reason (`problem`) and become error rows. The driver's memory holds the listing as
    Arrow columns (about 60 bytes an image), never Python objects per file.
    """
    import pyarrow as pa

    root_uri, entries = _list_entries(spark, uri)
    listing = Listing(root_uri=root_uri)
    limit = size_limit(spark)
    batches = []
    batch: Dict[str, list] = {name: [] for name in LISTING_COLUMNS}
    for entry in entries:
        if entry.problem is None and not is_image_name(entry.relative):
            _keep_ignored(listing, entry.relative)
            continue
        problem = entry.problem
        if problem is None and entry.size == 0:
            problem = EMPTY_FILE_REASON
        elif problem is None and entry.size > limit:
            problem = f"file too large ({entry.size} bytes, limit {limit})"
        for name, value in zip(LISTING_COLUMNS, (entry.relative, entry.size, entry.mtime_ms, problem)):
            batch[name].append(value)
        if len(batch["path"]) >= LISTING_BATCH:
            batches.append(_listing_batch(batch))
    batches.append(_listing_batch(batch))
    table = pa.Table.from_batches(batches)
    listing.table = table
    if table.num_rows == 0:
        raise OrchardError(
            f"no images under {uri} ({listing.ignored_count} files found, none ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}); expected <root>/<Split>/<Class>/<image>"
        )
    listing.table, listing.split_layout = _mark_strays(table)
    pa.default_memory_pool().release_unused()  # the batches' and strays' temporary buffers
    log.info("found %d files under %s: %d images (%d error rows already), %d ignored",
             listing.found, listing.root_uri, listing.n_images, listing.n_images - listing.n_readable,
             listing.ignored_count)
    return listing


def _keep_ignored(listing: Listing, relative: str) -> None:
    """Count an ignored file; keep its name when among the first IGNORED_SAMPLE (sorted)."""
    listing.ignored_count += 1
    if len(listing.ignored) < IGNORED_SAMPLE or relative < listing.ignored[-1]:
        bisect.insort(listing.ignored, relative)
        del listing.ignored[IGNORED_SAMPLE:]


def _listing_batch(batch: Dict[str, list]):
    """One Arrow RecordBatch of LISTING_COLUMNS from `batch` (emptied)."""
    import pyarrow as pa

    types = {"path": pa.string(), "size": pa.int64(), "mtime_ms": pa.int64(), "problem": pa.string()}
    record = pa.RecordBatch.from_arrays([pa.array(batch[name], types[name]) for name in LISTING_COLUMNS],
                                        names=list(LISTING_COLUMNS))
    for values in batch.values():
        values.clear()
    return record


def _mark_strays(table) -> Tuple[Any, bool]:
    """(table with a problem on the readable images that do not fit the layout, the layout):
    the layout is decided once from the readable images (see decide_layout)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    depth = pc.add(pc.count_substring(table["path"], "/"), 1)
    readable = pc.is_null(table["problem"])
    split_layout = bool(pc.any(pc.and_(readable, pc.greater_equal(depth, 3))).as_py())
    problem = table["problem"]
    for level, reason in _stray_reasons(split_layout).items():
        stray = pc.and_(pc.is_null(problem), pc.equal(depth, level))
        problem = pc.if_else(stray, pa.scalar(reason, pa.string()), problem)
    return table.set_column(table.schema.get_field_index("problem"), "problem", problem), split_layout


def file_size(spark, uri: str) -> int:
    """Size in bytes of one file (any filesystem Spark reads); -1 when it is gone."""
    try:
        return Storage(spark=spark).size(uri)
    except FileNotFoundError:
        return -1


def with_label_and_split(frame, split_layout: Optional[bool] = None):
    """Add `label` and `split` from the relative `path`: Split/Class/.../img (split layout),
    or Class/img. `split_layout` None: decided per row from its depth (3+ levels: split)."""
    from pyspark.sql import functions as F

    parts = F.split("path", "/")
    depth = F.size(parts)
    split = depth >= 3 if split_layout is None else F.lit(split_layout)
    return frame.withColumn(
        "label", F.when(split & (depth >= 3), parts[1]).when(~split & (depth >= 2), parts[0])
    ).withColumn("split", F.when(split & (depth >= 2), parts[0]))


def _binary_files(spark, uris: List[str], conf: Optional[Dict[str, str]] = None):
    """Spark's binaryFile scan of the files `uris` (see file_uri; taken literally: no glob),
    read by a child session with `conf` set (the caller's session is left as it was; the
    scan keeps the child's settings: see pipeline.sessions)."""
    settings = dict(conf or {})
    # recursiveFileLookup: Spark then takes its file index as is; without it, a root path with
    # glob characters ('[', '{', '*') is matched again against the index, and read twice
    reader_options = {GLOB_PATHS_OPTION: "false", "recursiveFileLookup": "true"}
    if uris and is_local_uri(uris[0]):  # a local disk lists faster on the driver than in a Spark job
        settings[DISCOVERY_THRESHOLD_KEY] = "1000000"
        reader_options.update(RAW_LOCAL_FILES)
    session = child_session(spark, settings) if settings else spark
    return session.read.format("binaryFile").options(**reader_options).load(uris)


def read_images(spark, listing: Listing, partitions: int, paths: Optional[List[str]] = None):
    """DataFrame(path, label, split, content) of the readable images (or of `paths`, relative,
    some of them), in `partitions` parts.

    The listing's problems are not in it (the pipeline makes them error rows).
    """
    from pyspark.sql import functions as F

    # Spark counts 4 MB per opened file when it packs files into scan tasks: with small images
    # that makes hundreds of tiny scan tasks. Count a small image's real cost instead (in the
    # scan's own session: the file relation keeps it); the repartition below spreads the
    # images over the cores anyway.
    prefix_length = len(listing.root_uri.rstrip("/")) + 1
    if paths is None:  # every readable image, in listing order (Spark does not need them sorted)
        paths = listing.readable_table.column("path").to_pylist()
    uris = [listing.uri(path) for path in paths]
    raw = bind(_binary_files(spark, uris, {OPEN_COST_KEY: str(SCAN_OPEN_COST_BYTES)}), spark)
    relative = raw.select(
        F.expr(f"substring(path, {prefix_length + 1})").alias("path"), "content"
    )
    labelled = with_label_and_split(relative, listing.split_layout)
    return labelled.select("path", "label", "split", "content").repartition(partitions)


LOCATION_COLUMN = "location"  # a local image's filesystem path, read by the Python workers


def local_root(root_uri: str) -> Optional[str]:
    """The root as a filesystem path when `root_uri` is on the local disk (`file:/abs`, as
    list_input qualifies it: unescaped), else None (hdfs://, s3://, ...)."""
    if not root_uri.startswith("file:"):
        return None
    path = root_uri[len("file:"):]
    if path.startswith("///"):  # file:///abs: an empty authority
        path = path[2:]
    return path if path.startswith("/") else None


def arrow_frame(spark, table, schema: str):
    """A DataFrame of the pyarrow `table` (its columns as `schema` names them), sent to Spark
    LISTING_BATCH rows at a time, so the driver never holds Python objects for more rows."""
    parts = [spark.createDataFrame(table.slice(start, LISTING_BATCH).to_pandas(), schema)
             for start in range(0, table.num_rows, LISTING_BATCH)]
    if not parts:
        return spark.createDataFrame([], schema)
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.unionByName(part)
    return frame


def image_locations(spark, listing: Listing, partitions: int, paths: Optional[List[str]] = None):
    """DataFrame(path, label, split, location) of the readable images (or of `paths`, relative,
    some of them) of a local input, in `partitions` parts: `location` is the image's path on
    this machine, for ImageFeaturizer's Python workers to read themselves (its string input).

    The alternative to read_images for a local disk: no file index of every path on the
    driver, no JVM scan, no shuffle of the image bytes (the rows shuffled are two short
    strings), as Ray Data and Daft read files inside their own workers. The executors must see
    the files at the same paths, as binaryFile's would. Raises OrchardError for a root that is
    not on the local disk.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    root = local_root(listing.root_uri)
    if root is None:
        raise OrchardError(f"internal: {listing.root_uri} is not on the local disk: read it with read_images")
    relative = listing.readable_table.column("path") if paths is None else pa.array(paths, pa.string())
    locations = pc.binary_join_element_wise(root.rstrip("/"), relative, "/")
    table = pa.table({"path": relative, LOCATION_COLUMN: locations})
    labelled = with_label_and_split(arrow_frame(spark, table, f"path string, {LOCATION_COLUMN} string"),
                                    listing.split_layout)
    return labelled.select("path", "label", "split", LOCATION_COLUMN).repartition(partitions)


def images_to_featurize(spark, listing: Listing, partitions: int, paths: Optional[List[str]] = None):
    """(images, column): DataFrame(path, label, split, column) and the column a featurizer
    reads: for a local input the images' paths (LOCATION_COLUMN, see image_locations: the
    Python workers read the files), else their bytes read by Spark ("content", see
    read_images: hdfs://, s3://)."""
    if local_root(listing.root_uri) is not None:
        return image_locations(spark, listing, partitions, paths), LOCATION_COLUMN
    return read_images(spark, listing, partitions, paths), "content"


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
    file's bytes. Images have an extension in IMAGE_EXTENSIONS, any letter case (other files are
    left out); the listing's problems (empty or too large files, dangling links, link loops,
    images outside class folders) are not in it (`orchard.run` reports them as errors).

    Lazy: the files are read when an action runs, in `partitions` partitions (default: from
    the image and core counts, see choose_partitions). The scan's own Spark settings apply to
    it only; the caller's session is not changed.

    Raises OrchardError when `uri` does not exist, is a file, or holds no image.
    """
    listing = list_input(spark, uri)
    count = partitions or choose_partitions(listing.n_readable, planned_cores(spark))
    return read_images(spark, listing, count)
