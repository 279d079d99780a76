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
    monkeypatch.setattr(doctor, "run_checks", lambda: [Check("java", OK, "Java 17"), Check("memory", FAIL, "low")])
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL memory   low" in out and "doctor: FAILED: memory" in out
    monkeypatch.setattr(doctor, "run_checks", lambda: [Check("blas", WARN, "slow")])
    assert main(["doctor"]) == 0
