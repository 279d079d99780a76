"""`orchard doctor`: each line OK/WARN/FAIL with what to do; exit 1 only on a failure."""
from orchard.cli import main
from orchard.commands import doctor
from orchard.commands.doctor import FAIL, OK, WARN, Check, blas_line, check_memory_line, check_model_line


def test_native_blas_is_ok_and_the_java_fallback_says_what_to_install():
    assert blas_line("dev.ludovic.netlib.blas.JNIBLAS", "dev.ludovic.netlib.lapack.JNILAPACK").status == OK
    fallback = blas_line("dev.ludovic.netlib.blas.Java11BLAS", "dev.ludovic.netlib.lapack.JavaLAPACK")
    assert fallback.status == WARN and "apt-get install libopenblas0-pthread liblapack3" in fallback.detail


def test_memory_lines(monkeypatch):
    monkeypatch.setattr(doctor, "available_memory_gib", lambda: 0.5)
    assert check_memory_line().status == FAIL
    monkeypatch.setattr(doctor, "available_memory_gib", lambda: 2.0)
    assert check_memory_line().status == WARN
    monkeypatch.setattr(doctor, "available_memory_gib", lambda: 16.0)
    assert check_memory_line().status == OK


def test_the_model_line_checks_the_packaged_file(monkeypatch, tmp_path):
    monkeypatch.delenv("ORCHARD_MODEL_DIR")
    line = check_model_line()
    assert line.status == OK and "(packaged)" in line.detail
    monkeypatch.setattr("orchard.pipeline.models.PACKAGED_DIR", tmp_path)
    monkeypatch.setenv("ORCHARD_MODEL_MIRROR", "http://127.0.0.1:9")
    assert check_model_line().status == FAIL


def test_a_failed_check_makes_the_exit_status_1(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "run_checks", lambda every_jar=False: [Check("java", OK, "Java 17"), Check("memory", FAIL, "low")])
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL memory   low" in out and "doctor: FAILED: memory" in out
    monkeypatch.setattr(doctor, "run_checks", lambda every_jar=False: [Check("blas", WARN, "slow")])
    assert main(["doctor"]) == 0


def test_the_jar_lines_give_version_and_sha256_and_catch_a_changed_jar(tmp_path, monkeypatch):
    from orchard.paths import file_digest
    from orchard.spark import maven

    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "maven" / "repository"))
    small = maven.JarSet("probe", ("org.slf4j:slf4j-simple:1.7.36",), purpose="a test set")
    (line,) = doctor.jar_set_lines(small)
    assert line.status == OK and "not fetched yet" in line.detail and "orchard local fetch" in line.detail

    jars = maven.resolve(small)  # real Maven, Maven Central
    (line,) = doctor.jar_set_lines(small)
    assert line.status == OK and f"org.slf4j:slf4j-simple:1.7.36 sha256 {jars[0].sha256[:12]}" in line.detail
    assert "(+1 dependencies" in line.detail
    every = doctor.jar_set_lines(small, every_jar=True)
    assert [c.detail.split()[1] for c in every] == ["org.slf4j:slf4j-simple:1.7.36", "org.slf4j:slf4j-api:1.7.36"]

    jars[1].path.chmod(0o644)
    with open(jars[1].path, "ab") as handle:
        handle.write(b"tampered")
    assert file_digest(jars[1].path) != jars[1].sha256
    statuses = [c.status for c in doctor.jar_set_lines(small, every_jar=True)]
    assert statuses == [OK, FAIL]


def test_doctor_lists_the_local_clusters_jar_sets(monkeypatch, tmp_path):
    from orchard.spark import maven

    monkeypatch.setenv(maven.REPOSITORY_ENV, str(tmp_path / "repository"))
    details = [line.detail for line in doctor.jar_lines()]
    assert any(d.startswith("s3a: org.apache.hadoop:hadoop-aws:3.") for d in details)
    assert any(d.startswith("hdfs: org.apache.hadoop:hadoop-hdfs:3.4.1") for d in details)
