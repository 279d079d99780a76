"""`orchard scale-test`: time whole `orchard run`s on 1, 2, ... executors, fit a fixed cost
plus a per-image cost, and project time and cost on N EMR core nodes.

Each measurement is one `orchard run` in a fresh process (`python -m orchard run ...`), timed
by the wall clock around it: Spark start, listing, featurizing, PCA and writing all count.
Configurations are executors x cores per executor, set with `spark.cores.max` and
`spark.executor.cores` on a standalone master: orchard's local cluster (started here, with as
many workers as the largest configuration needs, and stopped at the end), an existing master
(`--master spark://...`), or `--master local` (one JVM, `local[N]`: cores only).

The model fitted to the wall times T of every configuration (C cores in all, n images):

    T = F + p * n / C

F (seconds) is what does not shrink with more cores (Spark start, listing, driver-side work,
scheduling); p (core-seconds per image) is the parallel work. With runs on inputs of several
sizes a serial per-image term s is fitted too (T = F + s*n + p*n/C); with one size it cannot be
told apart from F and is taken as 0.

The package: records (a configuration, one measurement), runner (runs the configurations, each an
`orchard run` in a fresh process), fit (the model fit, speed-ups, projections and their cost),
render (the CSV files, the plot and the Markdown report).
"""
