"""The `transformer-lit` command (chapter 11), run for real in a subprocess on a tiny corpus.

Uses the installed console script when there is one (`.venv/bin/transformer-lit`), else
`python -m transformer_lit.cli`: both call `transformer_lit.cli.main`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(sys.executable).with_name("transformer-lit")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "transformer_lit.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "8",
        "--warmup-steps", "2", "--eval-interval", "3", "--eval-batches", "2", "--max-steps", "6"]
VERSE = "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 30


def run(*args, check_status: int | None = 0) -> subprocess.CompletedProcess:
    r = subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=300)
    if check_status is not None:
        assert r.returncode == check_status, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def val_loss(stdout: str) -> str:
    "The final validation loss the train command prints, as printed (4 decimals)."
    return re.findall(r"validation loss (\d+\.\d+)", stdout)[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    "A corpus and a finished 6-step run (checkpoints at steps 3 and 6)."
    d = tmp_path_factory.mktemp("cli")
    (d / "verse.txt").write_text(VERSE)
    r = run("train", "--data", d / "verse.txt", "--out", d / "run", *TINY)
    return d, r


def test_help_imports_neither_torch_nor_a_plugin():
    "`transformer-lit --help` lists the plugins from their entry points: it imports no plugin and not torch."
    code = ("import sys\nfrom transformer_lit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint(sorted(m for m in sys.modules if m == 'torch' or m.startswith('transformer_lit.')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "chat" in r.stdout and "transformer_lit.chat:chat_command" in r.stdout      # the plugin is listed ...
    assert r.stdout.strip().splitlines()[-1] == "['transformer_lit.cli']"                    # ... but nothing is imported


def test_help_explains_every_option():
    top = run("--help").stdout
    assert "train" in top and "generate" in top
    for sub, options in (("train", ["--data", "--out", "--resume", "--n-layer", "--n-head", "--n-embd", "--block-size",
                                    "--dropout", "--position", "--batch-size", "--max-steps", "--lr", "--min-lr",
                                    "--warmup-steps", "--weight-decay", "--beta2", "--grad-clip", "--val-fraction",
                                    "--eval-interval", "--eval-batches", "--seed", "--device", "--no-progress"]),
                         ("generate", ["--ckpt", "--prompt", "--max-new-tokens", "--temperature", "--top-k", "--top-p",
                                       "--seed", "--device"])):
        text = run(sub, "--help").stdout
        for opt in options:
            m = re.search(rf"^\s+{re.escape(opt)}\b(.*?)(?=^\s+-|\Z)", text, flags=re.M | re.S)
            assert m is not None, f"{sub} --help does not list {opt}"
            words = re.sub(r"^\s*[A-Z_]+", "", m.group(1).strip()).split()          # drop the metavar
            assert len(words) >= 3, f"{sub} --help: {opt} is not explained: {m.group(0)!r}"


def test_train_writes_checkpoints_and_validates(trained):
    d, r = trained
    assert "training a GPT of" in r.stdout
    assert re.search(r"step 6: validation loss \d+\.\d+", r.stdout)
    assert re.search(r"step +3: train loss \d+\.\d+, val loss \d+\.\d+", r.stdout)   # periodic validation
    assert "train:" in r.stderr and "6/6" in r.stderr                              # the progress bar
    run_dir = d / "run"
    assert (run_dir / "latest").read_text() == "step_00000006"
    assert {p.name for p in run_dir.glob("step_*")} == {"step_00000003", "step_00000006"}
    assert (run_dir / "step_00000006" / "model.safetensors").is_file()


def test_resume_continues_exactly(trained):
    d, first = trained
    # An interruption after step 3: a copy of the run without its last checkpoint.
    cut = d / "cut"
    shutil.copytree(d / "run", cut)
    shutil.rmtree(cut / "step_00000006")
    (cut / "latest").write_text("step_00000003")
    r = run("train", "--out", cut, "--resume", "--no-progress")                   # data path from run.json
    assert "resumed" in r.stdout and "at step 3 of 6" in r.stdout
    assert re.search(r"step +6: train loss", r.stdout) and "train:" not in r.stderr   # lines, no bar
    assert val_loss(r.stdout) == val_loss(first.stdout)                            # the same run, continued
    assert (cut / "latest").read_text() == "step_00000006"


def test_generate(trained):
    d, _ = trained
    a = run("generate", "--ckpt", d / "run", "--prompt", "Shall", "--max-new-tokens", "30", "--seed", "3",
            "--temperature", "1.0", "--top-k", "10", "--top-p", "0.95").stdout
    assert a.startswith("Shall") and len(a.rstrip("\n")) == len("Shall") + 30
    assert set(a) <= set(VERSE) | {"\n"}
    b = run("generate", "--ckpt", d / "run" / "step_00000006", "--prompt", "Shall", "--max-new-tokens", "30",
            "--seed", "3", "--temperature", "1.0", "--top-k", "10", "--top-p", "0.95").stdout
    assert a == b                                                                  # same seed, same text


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "{d}/missing.txt", "--out", "{d}/new"], "no such file"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/run"], "already holds a run"),
    (["train", "--out", "{d}/empty_run", "--resume"], "no run to resume"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--max-steps", "0"], "positive integer"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--lr", "-0.001"], "positive number"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--n-layer", "two"], "positive integer"),
    (["generate", "--ckpt", "{d}/nowhere", "--prompt", "Shall"], "no such directory"),
    (["generate", "--ckpt", "{d}/run", "--prompt", ""], "prompt is empty"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Zounds"], "'Z'"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--max-new-tokens", "-5"], "positive integer"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--temperature", "-1"], "number >= 0"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--top-k", "0"], "positive integer"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--top-p", "0"], "(0, 1]"),
    (["generate", "--prompt", "Shall"], "--ckpt"),
    (["fly"], "invalid choice"),
])
def test_mistakes_give_one_line_and_status_2(trained, args, needle):
    d, _ = trained
    (d / "empty_run").mkdir(exist_ok=True)
    (d / "other.txt").write_text(VERSE.upper())
    r = run(*[a.format(d=d) for a in args], check_status=2)
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert r.stderr.startswith("transformer-lit")


NO_GPU = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"   # a device not here


@pytest.mark.parametrize("args, needle", [
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--device", "foo"], "--device: device must be"),
    (["generate", "--ckpt", "{d}/run", "--prompt", "Shall", "--device", NO_GPU], f"'{NO_GPU}'"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--device", "foo"], "--device: device must be"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--device", NO_GPU], f"'{NO_GPU}'"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--max-steps", "50", "--warmup-steps", "100"],
     "--warmup-steps: 100 is more than --max-steps 50"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--lr", "1e-3", "--min-lr", "2e-3"],
     "--min-lr: 0.002 is larger than --lr 0.001"),
    (["train", "--out", "{d}/run", "--resume", "--data", "{d}/other.txt"], "is not the text this run was trained on"),
])
def test_device_schedule_and_data_mistakes(trained, args, needle):
    "Before the fix: a traceback for generate's device, silent clamping, and a resumed run on another text."
    test_mistakes_give_one_line_and_status_2(trained, args, needle)
    assert not (trained[0] / "new").exists()                  # refused before anything was written


def _damage(ckpt: Path, fname: str, data: bytes | None = None, edit=None):
    "Replace `fname` in a checkpoint (checksum updated, so only the content is wrong), or edit config.json."
    config = json.loads((ckpt / "config.json").read_text())
    if data is not None:
        (ckpt / fname).write_bytes(data)
        config["sha256"][fname] = hashlib.sha256(data).hexdigest()
    if edit is not None:
        edit(config)
    (ckpt / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, needle", [
    (lambda c: _damage(c, "state.pt", b"not a tensor file"), "state.pt' is not a plain-data state file"),
    (lambda c: _damage(c, "model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{oops}!!"),
     "model.safetensors' is not a safetensors file"),
    (lambda c: _damage(c, "", edit=lambda cfg: cfg.pop("sha256")), "config.json' has no valid 'sha256' table"),
    (lambda c: _damage(c, "model.safetensors", edit=lambda cfg: cfg["sha256"].update({"model.safetensors": "0" * 64})),
     "model.safetensors' is corrupt"),
    (lambda c: shutil.rmtree(c), "names the checkpoint 'step_00000006', but"),
])
@pytest.mark.parametrize("command", ["generate", "resume"])
def test_malformed_checkpoint_gives_one_line(trained, tmp_path, damage, needle, command):
    "Before the fix: UnpicklingError, SafetensorError, KeyError tracebacks and a wrong message for `latest`."
    d, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(d / "run", broken)
    damage(broken / "step_00000006")
    args = (["generate", "--ckpt", broken, "--prompt", "Shall"] if command == "generate"
            else ["train", "--out", broken, "--resume", "--no-progress"])
    r = run(*args, check_status=2)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert "step_00000006" in r.stderr                         # the message names the file


def test_a_failed_run_gives_one_line_and_status_1(tmp_path):
    "Not a mistake in the command, still no traceback: a loss that diverges ends with one line, exit 1."
    (tmp_path / "verse.txt").write_text(VERSE)
    r = run("train", "--data", tmp_path / "verse.txt", "--out", tmp_path / "run", *TINY, "--lr", "1e30",
            "--warmup-steps", "0", "--no-progress", check_status=1)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "NonFiniteLossError" in r.stderr and "at step 2" in r.stderr


PLUGIN = '''
class Count:
    name = "count"
    help = "count the characters of a file (a plugin's subcommand)"

    def add_arguments(self, parser):
        parser.add_argument("file", help="a text file")

    def run(self, args):
        with open(args.file, encoding="utf-8") as f:
            print(len(f.read()))
        return 0


class Crash:
    name = "crash"
    help = "a plugin whose run() fails"

    def add_arguments(self, parser):
        pass

    def run(self, args):
        raise RuntimeError("something went wrong inside the plugin")


class BadOptions:
    name = "bad-options"
    help = "a plugin whose add_arguments() raises"

    def add_arguments(self, parser):
        raise KeyError("oops")

    def run(self, args):
        return 0


class Clash(Count):
    name = "train"                                   # a built-in command's name


count, crash, bad_options, clash = Count(), Crash(), BadOptions(), Clash()
just_a_string = "not a command"
'''


def _install_plugin(tmp_path: Path, entry_points: str) -> dict:
    "A plugin 'installed' in tmp_path (a module and a dist-info folder), and the environment that finds it."
    (tmp_path / "fake_plugin.py").write_text(PLUGIN)
    info = tmp_path / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[transformer_lit.commands]\n" + entry_points)
    return {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def run_with(env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)


def test_a_plugin_adds_a_subcommand(tmp_path):
    env = _install_plugin(tmp_path, "count = fake_plugin:count\n")
    (tmp_path / "verse.txt").write_text(VERSE)
    r = run_with(env, "count", tmp_path / "verse.txt")
    assert r.returncode == 0 and r.stdout == f"{len(VERSE)}\n" and r.stderr == "", r
    top = run_with(env, "--help")
    assert top.returncode == 0 and "count" in top.stdout and "fake_plugin:count" in top.stdout   # listed, not loaded
    assert "a text file" in run_with(env, "count", "--help").stdout
    r = run_with(env, "count", tmp_path / "missing.txt")              # the plugin's OSError: a mistake, status 2
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "transformer-lit count: error:" in r.stderr, r
    assert "count" not in run("--help").stdout                        # without the plugin, no such command


def test_broken_plugins_give_one_line_each_and_the_rest_works(tmp_path, trained):
    env = _install_plugin(tmp_path, "missing = no_such_module:command\nattr = fake_plugin:no_such_object\n"
                                    "train = fake_plugin:clash\nother = fake_plugin:count\nbad-options = fake_plugin:bad_options\n"
                                    "not-a-command = fake_plugin:just_a_string\ncrash = fake_plugin:crash\n")
    d, _ = trained
    r = run_with(env, "generate", "--ckpt", d / "run", "--prompt", "Shall", "--max-new-tokens", "5", "--temperature", "0")
    assert r.returncode == 0 and r.stdout.startswith("Shall") and r.stderr == "", r   # a built-in command loads no plugin
    top = run_with(env, "--help")
    assert top.returncode == 0 and "Traceback" not in top.stderr and "missing" in top.stdout, top
    assert "--data" in run_with(env, "train", "--help").stdout            # 'train' stays the built-in command
    for name, needle in (("missing", "'missing' (no_such_module:command): it fails to load (ModuleNotFoundError"),
                         ("attr", "'attr' (fake_plugin:no_such_object): it fails to load (AttributeError"),
                         ("other", "'other' (fake_plugin:count): its entry point is named 'other' but the object's name is 'count'"),
                         ("bad-options", "'bad-options': its add_arguments failed (KeyError"),
                         ("not-a-command", "'not-a-command' (fake_plugin:just_a_string): its name must be a lower-case word")):
        r = run_with(env, name)                                        # the broken plugin is skipped: no such command
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 2, r.stderr
        assert lines[0].startswith("transformer-lit: warning: skipping the plugin") and needle in lines[0], lines
    r = run_with(env, "crash")                                         # a failure inside run(): one line, status 1
    assert r.returncode == 1 and "Traceback" not in r.stderr, r
    assert r.stderr.splitlines()[-1].startswith("transformer-lit crash: error: RuntimeError: something went wrong")


# ---- precision, compilation, strategy and token files (chapter 9's options on the command line) -----------

def test_help_explains_the_speed_options_and_tokenize():
    "Before: no --tokens, --precision, --compile or --strategy, and no tokenize command."
    for sub, options in (("train", ["--tokens", "--precision", "--compile", "--strategy"]),
                         ("tokenize", ["--data", "--out", "--tokenizer"])):
        text = run(sub, "--help").stdout
        for opt in options:
            m = re.search(rf"^\s+{re.escape(opt)}\b(.*?)(?=^\s+-|\Z)", text, flags=re.M | re.S)
            assert m is not None, f"{sub} --help does not list {opt}"
            assert len(re.sub(r"^\s*[{A-Z_][^ ]*", "", m.group(1).strip()).split()) >= 3, m.group(0)
    assert "tokenize" in run("--help").stdout


def _header(path: Path) -> tuple:
    import struct
    return struct.unpack("<8sIIQQ32s", path.read_bytes()[:64])


def test_tokenize_then_train_on_the_token_file(trained, tmp_path):
    "The token file of verse.txt trains the same run as verse.txt itself; a directory is read file by file."
    d, first = trained
    r = run("tokenize", "--data", d / "verse.txt", "--out", tmp_path / "verse.bin")
    assert f"wrote {len(VERSE):,} tokens (uint16, vocabulary 24)" in r.stdout
    magic, version, width, vocab, n, sha = _header(tmp_path / "verse.bin")
    assert (magic, version, width, vocab, n) == (b"TLTOKENS", 1, 2, 24, len(VERSE))
    assert (tmp_path / "verse.bin").stat().st_size == 64 + 2 * len(VERSE)
    assert (tmp_path / "verse.tokenizer.json").is_file()
    r = run("train", "--tokens", tmp_path / "verse.bin", "--out", tmp_path / "run", *TINY, "--no-progress")
    assert "on 2,460 tokens" not in r.stdout and f"on {len(VERSE):,} tokens" in r.stdout
    assert "attention kernel: flash (CPU)" in r.stdout
    assert val_loss(r.stdout) == val_loss(first.stdout)                          # the same run, from the file
    cut = tmp_path / "cut"                                                       # resumed: tokens path from run.json
    shutil.copytree(tmp_path / "run", cut)
    shutil.rmtree(cut / "step_00000006")
    (cut / "latest").write_text("step_00000003")
    r = run("train", "--out", cut, "--resume", "--no-progress")
    assert "at step 3 of 6" in r.stdout and val_loss(r.stdout) == val_loss(first.stdout)
    (tmp_path / "dir" / "more").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text(VERSE)
    (tmp_path / "dir" / "more" / "b.txt").write_text(VERSE.upper())
    (tmp_path / "dir" / "notes.md").write_text("not read: not a .txt file")
    r = run("tokenize", "--data", tmp_path / "dir", "--out", tmp_path / "dir.bin")
    assert f"wrote {2 * len(VERSE):,} tokens" in r.stdout and "from 2 file(s)" in r.stdout
    r = run("train", "--tokens", tmp_path / "dir.bin", "--out", tmp_path / "run_bf16", *TINY, "--no-progress",
            "--precision", "bf16")
    assert re.search(r"step 6: validation loss \d+\.\d+", r.stdout)


def test_fsdp_from_the_command_line_matches_one_process(trained, tmp_path):
    "torchrun -m transformer_lit.cli train --strategy fsdp: rank 0 speaks, the run equals one process's."
    d, _ = trained
    common = ["--data", d / "verse.txt", *TINY, "--no-progress"]
    single = run("train", "--out", tmp_path / "one", *common, "--batch-size", "8")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "transformer_lit.cli", "train", "--out", str(tmp_path / "two"), *map(str, common),
                        "--batch-size", "4", "--strategy", "fsdp"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("training a GPT of") == 1 and "in 2 processes (fsdp)" in r.stdout   # rank 0 only
    assert abs(float(val_loss(r.stdout)) - float(val_loss(single.stdout))) < 2e-4


@pytest.fixture(scope="module")
def bad_token_files(tmp_path_factory):
    "A good token file and damaged copies of it, an empty corpus and a directory without .txt files."
    d = tmp_path_factory.mktemp("token_files")
    (d / "verse.txt").write_text(VERSE)
    run("tokenize", "--data", d / "verse.txt", "--out", d / "good.bin")
    raw = (d / "good.bin").read_bytes()
    for name, content in (("short.bin", raw[:-10]), ("future.bin", raw[:8] + (9).to_bytes(4, "little") + raw[12:]),
                          ("other_tok.bin", raw)):
        (d / name).write_bytes(content)
        shutil.copy(d / "good.tokenizer.json", d / name.replace(".bin", ".tokenizer.json"))
    (d / "other_tok.tokenizer.json").write_text(json.dumps({"type": "char", "chars": list("abc"), "unk": None}))
    (d / "empty.txt").write_text("")
    (d / "no_txt").mkdir(exist_ok=True)
    return d


@pytest.mark.parametrize("args, needle", [
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--precision", "fp8"], "invalid choice: 'fp8'"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--strategy", "zero"], "invalid choice: 'zero'"),
    (["train", "--data", "{d}/verse.txt", "--out", "{d}/new", "--strategy", "fsdp"], "--strategy fsdp: shards the model"),
    (["train", "--data", "{d}/verse.txt", "--tokens", "{d}/good.bin", "--out", "{d}/new"], "not both"),
    (["train", "--tokens", "{d}/missing.bin", "--out", "{d}/new"], "--tokens: no such file"),
    (["train", "--tokens", "{d}/verse.txt", "--out", "{d}/new"], "is not a token file"),
    (["train", "--tokens", "{d}/short.bin", "--out", "{d}/new"], "is truncated or corrupt"),
    (["train", "--tokens", "{d}/future.bin", "--out", "{d}/new"], "version must be 1, got 9"),
    (["train", "--tokens", "{d}/other_tok.bin", "--out", "{d}/new"], "is not the tokenizer"),
    (["tokenize", "--data", "{d}/empty.txt", "--out", "{d}/new.bin"], "the corpus"),
    (["tokenize", "--data", "{d}/no_txt", "--out", "{d}/new.bin"], "holds no .txt files"),
    (["tokenize", "--data", "{d}/nowhere", "--out", "{d}/new.bin"], "no such file or directory"),
    (["tokenize", "--data", "{d}/verse.txt", "--out", "{d}/new.bin", "--tokenizer", "{d}/verse.txt"], "--tokenizer"),
])
def test_speed_and_token_file_mistakes_give_one_line(bad_token_files, args, needle):
    "Before: --precision, --strategy, --tokens and tokenize did not exist (argparse refused them)."
    d = bad_token_files
    r = run(*[a.format(d=d) for a in args], check_status=2)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr
    assert not (d / "new").exists() and not (d / "new.bin").exists()


def test_fp16_on_this_cpu_gives_one_line(tmp_path):
    from transformer_lit.parallel import cpu_has_fp16
    if torch.cuda.is_available() or cpu_has_fp16():
        pytest.skip("this machine computes float16")
    (tmp_path / "verse.txt").write_text(VERSE)
    r = run("train", "--data", tmp_path / "verse.txt", "--out", tmp_path / "new", *TINY, "--precision", "fp16",
            "--device", "cpu", check_status=2)
    assert r.stderr.count("\n") == 1 and "--precision: precision='fp16' needs a GPU or a CPU with native float16" in r.stderr
    assert not (tmp_path / "new").exists()


def test_tokenize_with_a_bpe_tokenizer_gives_the_ids_of_the_whole_text(tmp_path):
    "The pieces tokenize encodes (cut at a newline between non-spaces) give a BPE the whole text's ids."
    import random
    import numpy as np
    from transformer_lit.cli import _text_pieces
    from transformer_lit.tokenizer import BPETokenizer, load_corpus
    text = load_corpus()[:60_000]
    tok = BPETokenizer.train(text, 300)
    rng = random.Random(0)                                   # and a text made of the awkward cases
    awkward = "".join(rng.choice(["a", "b", " ", "\n", "  ", "\n\n", "'s", "1", ".", " \n"]) for _ in range(20_000))
    for t, size in ((text, 997), (awkward, 50)):
        pieces = list(_text_pieces(t, size))
        assert len(pieces) > 20 and "".join(pieces) == t
        assert [i for p in pieces for i in tok.encode(p)] == tok.encode(t)
    tok.save(tmp_path / "bpe.json")
    (tmp_path / "text.txt").write_text(text)
    r = run("tokenize", "--data", tmp_path / "text.txt", "--out", tmp_path / "text.bin", "--tokenizer", tmp_path / "bpe.json")
    assert "vocabulary 300" in r.stdout
    ids = np.fromfile(tmp_path / "text.bin", dtype=np.uint16, offset=64)
    assert ids.tolist() == tok.encode(text)


@pytest.mark.parametrize("arch, cls, extra", [("llama", "Llama", ["--n-kv-head", "1"]), ("deepseek", "DeepSeek", [])])
def test_arch_trains_resumes_generates_and_loads(tmp_path, arch, cls, extra):
    "`--arch llama` (chapter 12) and `--arch deepseek` (chapter 14), found through the entry-point group transformer_lit.architectures."
    from transformer_lit.checkpoint import load_model
    from transformer_lit.gpt import generate
    (tmp_path / "verse.txt").write_text(VERSE)
    r = run("train", "--data", tmp_path / "verse.txt", "--out", tmp_path / "run", "--arch", arch, *extra, "--no-progress", *TINY)
    assert f"training a {cls} of" in r.stdout
    saved = json.loads((tmp_path / "run" / "step_00000006" / "config.json").read_text())["model_config"]
    assert saved["arch"] == arch and (arch != "llama" or saved["n_kv_head"] == 1)
    model, tok = load_model(tmp_path / "run")                          # the public loader: any architecture
    assert type(model).__name__ == cls and not model.training and tok.vocab_size == len(set(VERSE))
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "run", cut)
    shutil.rmtree(cut / "step_00000006")
    (cut / "latest").write_text("step_00000003")
    again = run("train", "--out", cut, "--resume", "--no-progress")
    assert "resumed" in again.stdout and val_loss(again.stdout) == val_loss(r.stdout)
    text = run("generate", "--ckpt", tmp_path / "run", "--prompt", "Shall", "--max-new-tokens", "20", "--temperature", "0").stdout
    body = text[:-1]                                                   # the command ends its output with a newline
    assert text.endswith("\n") and body.startswith("Shall") and len(body) == len("Shall") + 20
    ids = generate(model, tok.encode("Shall"), 20, temperature=0.0)      # in Python, the same greedy text
    assert tok.decode(ids.tolist()) == body


@pytest.mark.parametrize("args, needle", [
    (["--arch", "llama", "--n-head", "4", "--n-kv-head", "3"], "n_kv_head"),
    (["--arch", "gpt2", "--n-kv-head", "2"], "--n-kv-head: gpt2"),
    (["--arch", "llama", "--position", "alibi"], "--position: --arch llama uses rope"),
    (["--arch", "mamba"], "--arch"),
])
def test_arch_mistakes_give_one_line(tmp_path, args, needle):
    (tmp_path / "verse.txt").write_text(VERSE)
    tiny = [a for a in TINY]
    if "--n-head" in args:                                     # the case's own head count replaces TINY's
        i = tiny.index("--n-head"); del tiny[i:i + 2]
    r = run("train", "--data", tmp_path / "verse.txt", "--out", tmp_path / "run", *tiny, *args, check_status=2)
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
