"""`transformer-lit chat` (chapter 13): the template, history trimming, streaming and the command itself.

The model is a tiny random GPT: these tests check the mechanics of a conversation, not what it says
(the chapter trains the real assistant and shows what it says). The command runs in a subprocess with
piped standard input, as a script would run it: through `transformer-lit chat` when chapter 11's CLI
has discovered the plug-in (the `transformer_lit.commands` entry point), and always through
`python -m transformer_lit.chat chat`, the same command without the discovery.
"""
import io
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from transformer_lit.assistant import ChatTokenizer, completion_mask, resize_token_embeddings
from transformer_lit.chat import Chat, chat_command, chat_loop, load_assistant, save_assistant, stream_reply, trim_history
from transformer_lit.gpt import GPT, GPTConfig, generate
from transformer_lit.checkpoint import save_checkpoint

try:
    from transformer_lit.tokenizer import CharTokenizer
except ImportError:                                   # before the renumbering: chapter 7 was training
    from transformer_lit.tokenizer import CharTokenizer

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?.,<|>"     # no newline: one reply, one line


def tiny_assistant(block_size: int = 48, seed: int = 0):
    torch.manual_seed(seed)
    tok = ChatTokenizer(CharTokenizer.train(CHARS))
    model = GPT(GPTConfig(vocab_size=tok.base.vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))
    return resize_token_embeddings(model, tok.vocab_size).eval(), tok


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    model, tok = tiny_assistant()
    return save_assistant(tmp_path_factory.mktemp("chat") / "assistant", model, tok)


def cli_command() -> list[str]:
    "The installed `transformer-lit` script (next to this Python, else on PATH), or the module that it runs."
    script = Path(sys.executable).with_name("transformer-lit")
    if script.is_file():
        return [str(script)]
    return [shutil.which("transformer-lit")] if shutil.which("transformer-lit") else [sys.executable, "-m", "transformer_lit.cli"]


def run(args, stdin="", via="module"):
    cmd = ([sys.executable, "-m", "transformer_lit.chat", "chat"] if via == "module"
           else [*cli_command(), "chat"]) + [str(a) for a in args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=ENV)


def cli_has_chat() -> bool:
    return any(ep.name == "chat" for ep in entry_points(group="transformer_lit.commands"))


VIAS = ["module", pytest.param("cli", marks=pytest.mark.skipif(
    not cli_has_chat(), reason="the transformer_lit.commands entry point 'chat' is not installed (pyproject.toml, "
                               "then pip install -e .)"))]


# --- the functions ---------------------------------------------------------------------------------

def test_template_and_special_tokens():
    model, tok = tiny_assistant()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    ids = tok.encode_chat(msgs)
    assert tok.decode(ids) == "<|system|>be brief<|end|><|user|>hi<|end|><|assistant|>"
    assert tok.decode(tok.encode_chat(msgs, add_generation_prompt=False)) == "<|system|>be brief<|end|><|user|>hi<|end|>"
    assert max(tok.encode("<|assistant|>")) < tok.base.vocab_size          # typed markers are plain characters
    assert ChatTokenizer.from_dict(tok.to_dict()).encode_chat(msgs) == ids
    assert model.config.vocab_size == tok.vocab_size


def test_trim_history_drops_whole_turns_and_keeps_the_system_message():
    _, tok = tiny_assistant()
    msgs = [{"role": "system", "content": "sys"}]
    for i in range(8):
        msgs += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]
    msgs.append({"role": "user", "content": "last"})
    for budget in (20, 30, 45, 80):
        kept = trim_history(tok, msgs, budget)
        assert len(tok.encode_chat(kept)) <= budget
        assert kept[0] == msgs[0] and kept[-1] == msgs[-1] and kept[1]["role"] == "user"
        assert kept[1:] == msgs[len(msgs) - len(kept) + 1:]                  # a suffix: the oldest turns went
        longer = [msgs[0]] + msgs[len(msgs) - len(kept) - 1:]                 # one more turn would not fit
        assert len(tok.encode_chat(longer)) > budget
    assert trim_history(tok, msgs, 10_000) == msgs
    with pytest.raises(ValueError, match="the last message needs"):
        trim_history(tok, msgs, 8)
    with pytest.raises(ValueError, match="role"):
        trim_history(tok, [{"role": "bot", "content": "x"}], 10)


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 3), (0.7, 11)])
def test_stream_reply_equals_generate(temperature, seed):
    model, tok = tiny_assistant()
    prompt = tok.encode_chat([{"role": "user", "content": "hello there"}])
    streamed = list(stream_reply(model, tok, prompt, 20, temperature=temperature, seed=seed))
    out = generate(model, prompt, 20, temperature=temperature, stop_tokens=[tok.end_id], seed=seed)[len(prompt):].tolist()
    out = out[:out.index(tok.end_id)] if tok.end_id in out else out
    assert "".join(streamed) == tok.decode(out)
    assert all(len(p) == 1 for p in streamed)                                  # one character per piece: streaming
    with pytest.raises(ValueError, match="must fit in block_size"):
        list(stream_reply(model, tok, prompt, 48))


def test_chat_loop_reset_exit_and_errors():
    model, tok = tiny_assistant()
    out, err = io.StringIO(), io.StringIO()
    chat_loop(Chat(model, tok, max_new_tokens=8), ["hello", "more", "/reset", "hello", "caf\u00e9", "/exit", "never"], out, err)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0] == lines[2]                          # after /reset, the first turn again
    assert "(history cleared)" in err.getvalue()
    assert "chat: CharTokenizer.encode" in err.getvalue() and err.getvalue().count("\n") == 2
    chat = Chat(model, tok, max_new_tokens=8)
    for text in ["a long question number %d" % i for i in range(10)]:        # far past the context: trimmed
        "".join(chat.send(text))
        assert len(tok.encode_chat(chat.history)) <= model.config.block_size
    with pytest.raises(ValueError, match="max_new_tokens"):
        Chat(model, tok, max_new_tokens=48)


def test_load_assistant_refuses_a_checkpoint_without_a_template(tmp_path, ckpt):
    model, tok = load_assistant(ckpt)
    assert isinstance(tok, ChatTokenizer) and model.config.vocab_size == tok.vocab_size
    plain = GPT(GPTConfig(vocab_size=tok.base.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=8))
    p = save_checkpoint(tmp_path / "plain", plain, model_config={"vocab_size": tok.base.vocab_size}, tokenizer=tok.base)
    with pytest.raises(ValueError, match="has no chat template"):
        load_assistant(p)


def test_chat_command_follows_the_cli_protocol():
    from transformer_lit import cli
    assert chat_command.name == "chat" and isinstance(chat_command.help, str)
    if cli_has_chat():                                                        # installed: the CLI discovers it
        assert cli.load_commands()["chat"] is chat_command
    try:
        parser = cli.build_parser({"chat": chat_command})                    # the CLI's parser with the plugin
    except TypeError:                                                         # a CLI without plugins
        pytest.skip("this transformer_lit.cli has no build_parser(commands)")
    args = parser.parse_args(["chat", "--ckpt", "x", "--temperature", "0.5", "--top-p", "0.9", "--system", "hi"])
    assert (args.command, args.temperature, args.top_p, args.system, args.max_new_tokens) == ("chat", 0.5, 0.9, "hi", 32)
    assert callable(chat_command.run)


# --- the command, through a pipe ---------------------------------------------------------------------

@pytest.mark.parametrize("via", VIAS)
def test_chat_command_piped(ckpt, via):
    r = run(["--ckpt", ckpt, "--max-new-tokens", "10"], stdin="hello\nmore\n/reset\nhello\n", via=via)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[0] == lines[2], r.stdout               # greedy: the same first turn after /reset
    assert "(history cleared)" in r.stderr
    r = run(["--ckpt", ckpt, "--max-new-tokens", "10", "--temperature", "1", "--seed", "5", "--system", "be nice"],
            stdin="hello\n/exit\nnot read\n", via=via)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1, (r.stdout, r.stderr)
    r = run(["--ckpt", ckpt], stdin="", via=via)                             # end of input at once: a clean exit
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


@pytest.mark.parametrize("via", VIAS)
def test_chat_command_errors_are_one_line(tmp_path, ckpt, via):
    plain = save_checkpoint(tmp_path / "plain", GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=4)),
                            model_config={}, tokenizer=CharTokenizer.train("abcdefghij"))
    for args, msg in (([ "--ckpt", tmp_path / "missing"], "no such directory"),
                      (["--ckpt", plain], "no chat template"),
                      (["--ckpt", tmp_path], "neither a checkpoint"),
                      (["--ckpt", ckpt, "--max-new-tokens", "47"], "--max-new-tokens"),
                      (["--ckpt", ckpt, "--temperature", "-1"], "--temperature"),
                      (["--ckpt", ckpt, "--device", "tpu"], "--device")):
        r = run(args, stdin="hello\n", via=via)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


# --- the saved format and the module boundaries -------------------------------------------------------

def test_assistant_checkpoint_is_in_the_common_format(ckpt):
    from transformer_lit.checkpoint import load_checkpoint
    info = load_checkpoint(ckpt)
    assert info["model_config"]["arch"] == "gpt2" and info["tokenizer"]["type"] == "chat"
    try:
        from transformer_lit.checkpoint import load_model                      # the public loader (chapter 8)
    except ImportError:
        pytest.skip("transformer_lit.checkpoint.load_model is not in this package yet")
    model, tok = load_model(ckpt)
    ref, ref_tok = load_assistant(ckpt)
    assert isinstance(model, GPT) and tok.to_dict() == ref_tok.to_dict()
    x = torch.tensor([ref_tok.encode_chat([{"role": "user", "content": "hi"}])])
    assert torch.equal(model(x)[0], ref(x)[0])


def test_completion_mask():
    E = 9
    ids = torch.tensor([[1, 2, 3, 4, E, 0], [1, 2, 5, E, 6, E]])
    assert completion_mask(ids, torch.tensor([3, 2]), stop_token=E).tolist() == [
        [False, False, True, True, False], [False, True, True, False, False]]
    assert completion_mask(ids, 2, stop_token=E, last=torch.tensor([3, 5])).tolist() == [
        [False, True, True, False, False], [False, True, True, False, False]]      # the earlier of the two ends
    assert completion_mask(ids, 1).all()
    with pytest.raises(ValueError, match="one entry per row"):
        completion_mask(ids, 2, last=torch.tensor([3]))
    with pytest.raises(TypeError, match="prompt_len must be an int"):
        completion_mask(ids, 2.0)


def test_no_private_name_crosses_modules():
    import transformer_lit
    root = Path(transformer_lit.__file__).parent
    for name in ("assistant.py", "preference.py", "chat.py"):
        src = (root / name).read_text(encoding="utf-8")
        assert "import _" not in src and "cli._" not in src and "from transformer_lit.cli import _" not in src, name
        assert len(src.splitlines()) <= 700, (name, len(src.splitlines()))


def test_chat_holds_two_turns():
    model, tok = tiny_assistant()
    chat = Chat(model, tok, max_new_tokens=6)
    first = "".join(chat.send("hello"))
    second = "".join(chat.send("again"))
    assert [m["role"] for m in chat.history] == ["user", "assistant", "user", "assistant"]
    assert chat.history[1]["content"] == first and chat.history[3]["content"] == second
