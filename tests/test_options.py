"""Each option is declared once: the CLI, the HTTP form, the OpenAPI description and the page's choices must
agree with that declaration and with each other."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from facerestore.arguments import options_from
from facerestore.cli import build_parser
from facerestore.errors import OptionError
from facerestore.options import (
    BatchOptions,
    Encoding,
    OptionField,
    RestoreOptions,
    VideoOptions,
    build,
    cli_fields,
    http_fields,
    option_fields,
)
from facerestore.server.app import create_app
from facerestore.server.config import ServerConfig
from facerestore.server.forms import restore_options


def _subparser(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


def _cli_options(*args: str) -> tuple[RestoreOptions, BatchOptions]:
    parsed = build_parser().parse_args(["restore", "in.jpg", "-o", "out", *args])
    return options_from(parsed, RestoreOptions), options_from(parsed, BatchOptions)


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(ServerConfig(preload=False)).openapi()


def test_every_option_is_documented_and_placed() -> None:
    for model in (RestoreOptions, BatchOptions, Encoding, ServerConfig):
        for field in option_fields(model):
            assert field.help, f"{model.__name__}.{field.name} has no help text"
    names = [field.name for field in option_fields(RestoreOptions)]
    assert len(names) == len(set(names)), "flattened option names must be unique"


def test_cli_flags_are_the_declarations() -> None:
    parser = _subparser("restore")
    flags = {option for action in parser._actions for option in action.option_strings}
    for field in [*cli_fields(RestoreOptions), *cli_fields(BatchOptions)]:
        assert set(field.flags) <= flags, field.name
        action = next(a for a in parser._actions if a.dest == field.name)
        assert field.help in (action.help or "").replace("%%", "%")
        if field.choices and action.metavar:
            assert all(choice in str(action.metavar) + str(action.help) for choice in field.choices)


def test_cli_defaults_are_the_api_defaults() -> None:
    options, batch = _cli_options()
    assert options == RestoreOptions()
    assert batch.encoding == Encoding() and batch.suffix == "" and not batch.overwrite


def test_openapi_form_is_the_declaration(openapi: dict[str, Any]) -> None:
    form = openapi["components"]["schemas"]["RestoreForm"]["properties"]
    exposed: list[OptionField] = [
        *http_fields(RestoreOptions),
        *http_fields(Encoding),
        *http_fields(VideoOptions),
    ]
    assert set(form) == {"image", *(field.name for field in exposed)}
    for field in exposed:
        schema = form[field.name]
        assert schema.get("default") == field.info.default, field.name
        if field.choices:
            assert schema["enum"] == list(field.choices), field.name
    assert (form["scale"]["minimum"], form["scale"]["maximum"]) == (1, 8)
    assert "model_path" not in form and "device" not in form  # the server decides these, not a client
    body = openapi["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["$ref"] == "#/components/schemas/RestoreForm"


CASES = [
    {"scale": "3.5", "face_model": "realesrgan-x4plus", "fidelity": "0.2", "bg_upsampler": "none"},
    {"blend": "0.4", "color_fix": "false", "threshold": "0.7", "only_largest_face": "true"},
    {"detector": "yunet", "min_face_size": "24", "bg_precision": "fp32", "aligned": "true"},
]


def _as_cli(fields: dict[str, str]) -> list[str]:
    args = []
    for name, value in fields.items():
        flag = "--" + name.replace("_", "-")
        args += (
            [flag if value == "true" else f"--no-{flag[2:]}"] if value in ("true", "false") else [flag, value]
        )
    return args


@pytest.mark.parametrize("fields", CASES)
def test_cli_and_http_build_the_same_options(fields: dict[str, str]) -> None:
    config = ServerConfig(preload=False)
    over_http, _, _ = restore_options(fields, config)
    on_the_command_line, _ = _cli_options(*_as_cli(fields))
    assert over_http == on_the_command_line


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"scale": "9"}, "scale"),
        ({"fidelity": "nan"}, "fidelity"),
        ({"face_model": "retinaface"}, "detector"),
        ({"bg_upsampler": "magic"}, "background upsampler"),
        ({"quality": "0"}, "quality"),
        ({"format": "gif"}, "format"),
        ({"crf": "52"}, "crf"),
    ],
)
def test_cli_and_http_refuse_the_same_values(fields: dict[str, str], words: str) -> None:
    with pytest.raises(OptionError) as over_http:
        restore_options(fields, ServerConfig(preload=False))
    with pytest.raises(OptionError) as on_the_command_line:
        _cli_options(*_as_cli(fields))
    assert words in str(over_http.value) and words in str(on_the_command_line.value)
    flag = "--" + next(iter(fields)).replace("_", "-")
    assert on_the_command_line.value.render(lambda name: "--" + name.replace("_", "-")).startswith(flag)


def test_library_messages_name_options_not_flags() -> None:
    with pytest.raises(OptionError) as error:
        build(RestoreOptions, {"model_path": "x.onnx"})
    assert "--" not in str(error.value) and "model_path" in str(error.value)
    assert error.value.render(lambda name: f"<{name}>").startswith("<model_path> needs <face_model>")


def test_model_files_that_would_be_ignored_are_refused() -> None:
    with pytest.raises(OptionError, match="face-prior"):
        build(RestoreOptions, {"face_model": "realesrgan-x4plus", "model_path": "x.onnx"})
    with pytest.raises(OptionError, match="yunet"):
        build(RestoreOptions, {"detector_model_path": "x.onnx"})
