"""What the CLI's commands share for output: `--json` or readable text, state names."""

from __future__ import annotations

import argparse

from google.protobuf import json_format
from google.protobuf.message import Message

from sessiongate.api.v1 import common_pb2 as cpb


def emit(ns: argparse.Namespace, msg: Message, human: str) -> None:
    """`msg` as JSON with `--json`, else the readable `human` text."""
    if ns.json:
        print(json_format.MessageToJson(msg, preserving_proto_field_name=True))
    else:
        print(human)


def state_name(v: int) -> str:
    return cpb.AccountState.Name(v).removeprefix("ACCOUNT_STATE_")  # type: ignore[arg-type]
