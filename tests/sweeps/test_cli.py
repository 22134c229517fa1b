"""The ``hybridlab`` command line (``sweeps/cli.py``): ``pattern`` output, its errors, and a reader that stops early.

The sweep, compare and bench commands are specified beside what they run (``test_sweep.py``, ``test_bench.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from blocks import HybridLM, ModelConfig
from sweeps.cli import main


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sweeps.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_pattern_prints_both_forms_the_hash_and_one_row_per_sublayer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pattern", "M-A-M-A"]) == 0
    out = capsys.readouterr().out
    assert "canonical:   M-A-M-A" in out and "compact:     (M-A)*2" in out and "layout_hash: " in out
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [(r[0], r[1], r[2]) for r in rows] == [("0", "M", "mamba"), ("1", "A", "swa"), ("2", "M", "mamba"),
                                                   ("3", "A", "swa")]
    assert "parameters:" in out and "FLOPs/token:" in out and "inference state:" in out


def test_pattern_json_of_samba_421m_counts_what_the_model_holds(capsys: pytest.CaptureFixture[str]) -> None:
    text = "(M-F-A[window=2048]-F)*6"
    assert main(["pattern", text, "--d-model", "1536", "--vocab", "32000", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["compact"] == text and doc["n_layers"] == 24 and doc["d_model"] == 1536
    assert [layer["symbol"] for layer in doc["layers"]] == list("MFAF" * 6)
    model = HybridLM(ModelConfig(pattern=text, d_model=1536), vocab_size=32000)
    assert doc["params"] == model.num_params() == 421_793_280  # samba-facts.md: 421.8M
    assert doc["flops_per_token"] == model.flops_per_token(4096)


def test_a_bad_pattern_exits_2_with_the_caret_message_and_no_traceback() -> None:
    proc = _cli("pattern", "(M-F-A[windw=2048]-F)*6")
    out, err = proc.communicate(timeout=120)
    text = err.decode()
    assert proc.returncode == 2 and out == b""
    assert text.startswith("hybridlab pattern: error: invalid pattern at column 7: unknown key 'windw' for A (swa)")
    lines = text.splitlines()
    assert lines[1] == "  (M-F-A[windw=2048]-F)*6" and lines[2] == " " * 9 + "^"
    assert "did you mean 'window'?" in text and "Traceback" not in text


def test_output_cut_short_by_its_reader_ends_quietly_with_sigpipes_status() -> None:
    """``hybridlab pattern ... | head``: the reader closes the pipe early; no traceback, status 141 as for SIGPIPE."""
    proc = _cli("pattern", "(M-F-A-F)*200", "--json")  # about 230 KB, more than a pipe holds
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(9) == b'{\n  "cano'
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
