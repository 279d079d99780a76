"""What a user sees when something is wrong: one line saying what and how to fix it, exit != 0;
and the help of every command and option."""
import argparse
import os
import sys
from pathlib import Path

import pytest

from orchard.cli import build_parser
from orchard.commands.run import config_from_args
from orchard.names import DEFAULT_MODEL
from orchard.spark.session import java_major_version
from tests.fixtures.processes import run_captured


def orchard(*args, env=None, timeout=180):
    return run_captured([sys.executable, "-m", "orchard", *args], timeout=timeout, env=env)


def assert_one_clear_line(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "\tat " not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("orchard: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.fixture
def tiny_dataset(tmp_path, sample_dir):
    folder = tmp_path / "data" / "Banana"
    folder.mkdir(parents=True)
    for image in sorted((sample_dir / "Training" / "Banana").iterdir())[:2]:
        (folder / image.name).write_bytes(image.read_bytes())
    return tmp_path / "data"


def commands(parser: argparse.ArgumentParser, path=None):
    """(command path, its parser) for the parser and every subcommand under it, nested ones
    (`aws cluster create`) included; (path, None) for a subcommand registered without help."""
    path = path or (parser.prog,)
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))
                if not helps.get(name):
                    yield path + (name,), None


def undocumented(parser: argparse.ArgumentParser):
    """'command: option' for every subcommand without help and every argument without help text."""
    missing = []
    for path, command in commands(parser):
        if command is None:
            missing.append(f"{' '.join(path)}: the command itself")
            continue
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_help_documents_every_option():
    parser = build_parser()
    walked = {path: command for path, command in commands(parser) if command is not None}
    assert ("orchard", "aws", "cluster", "create") in walked  # the walk reaches nested subcommands
    assert len(walked) > 15
    missing = undocumented(parser)
    assert not missing, "options without help text:\n" + "\n".join(missing)
    text = orchard("run", "--help").stdout
    for option in ("--input", "--output", "--model", "--model-path", "--pca-variance", "--pca-k",
                   "--batch-size", "--master", "--overwrite", "--config", "--profile"):
        assert option in text


def test_an_option_without_help_is_caught():
    parser = build_parser()
    run = next(command for path, command in commands(parser) if path == ("orchard", "run"))
    run.add_argument("--undocumented-probe")
    nested = argparse.ArgumentParser(prog="x")
    nested.add_subparsers().add_parser("quiet")  # a subcommand without help
    assert "orchard run: --undocumented-probe" in undocumented(parser)
    assert undocumented(nested) == ["x quiet: the command itself"]


def test_missing_input(tmp_path):
    assert_one_clear_line(orchard("run", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")),
                          "input not found")


def test_output_exists_without_overwrite(tmp_path, tiny_dataset):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("keep me")
    assert_one_clear_line(orchard("run", "--input", str(tiny_dataset), "--output", str(tmp_path / "out")),
                          "already exists", "--overwrite")
    assert (tmp_path / "out" / "old.txt").exists()


@pytest.mark.parametrize("content,message", [(None, "model file not found"),
                                             (b"<html></html>", "not an ONNX model"),
                                             (b"\x08\x07" + b"\0" * 100, "checksum mismatch")])
def test_bad_model_file(tmp_path, tiny_dataset, content, message):
    model = tmp_path / "model.onnx"
    if content is not None:
        model.write_bytes(content)
    assert_one_clear_line(orchard("run", "--input", str(tiny_dataset), "--output", str(tmp_path / "o"),
                                  "--model-path", str(model)), message)


def test_unknown_model(tmp_path, tiny_dataset):
    assert_one_clear_line(orchard("run", "--input", str(tiny_dataset), "--output", str(tmp_path / "o"),
                                  "--model", "resnet9000"), "unknown model", DEFAULT_MODEL)


def test_java_missing(tmp_path, tiny_dataset):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).resolve().parent)
    assert_one_clear_line(orchard("run", "--input", str(tiny_dataset), "--output", str(tmp_path / "o"), env=env),
                          "Java not found", "JAVA_HOME")


@pytest.mark.slow
def test_folder_without_images(tmp_path):
    (tmp_path / "docs" / "a").mkdir(parents=True)
    (tmp_path / "docs" / "a" / "readme.txt").write_text("hello")
    assert_one_clear_line(orchard("run", "--input", str(tmp_path / "docs"), "--output", str(tmp_path / "o"),
                                  "--master", "local[1]"), "no images under", "1 files found")


def test_bad_option_values_are_rejected_before_any_work(tmp_path):
    assert_one_clear_line(orchard("run", "--input", "x", "--output", "y", "--pca-variance", "1.5"),
                          "--pca-variance must be in (0, 1]")


def test_config_file_then_command_line(tmp_path):
    config_file = tmp_path / "orchard.yaml"
    config_file.write_text("input: data/\noutput: out/\npca-k: 12\nbatch_size: 32\n")
    args = build_parser().parse_args(["run", "--config", str(config_file), "--batch-size", "16"])
    config = config_from_args(args)
    assert (config.input, config.output, config.pca_k, config.batch_size) == ("data/", "out/", 12, 16)


def test_config_file_with_an_unknown_key(tmp_path):
    config_file = tmp_path / "orchard.json"
    config_file.write_text('{"input": "a", "output": "b", "pca_kk": 3}')
    assert_one_clear_line(orchard("run", "--config", str(config_file)), "unknown setting(s) pca_kk")


@pytest.mark.parametrize("text,major", [('openjdk version "17.0.15" 2025-04-15', 17),
                                        ('java version "1.8.0_392"', 8),
                                        ('openjdk version "11" 2018-09-25', 11),
                                        ("nonsense", None)])
def test_java_version_parsing(text, major):
    assert java_major_version(text) == major
