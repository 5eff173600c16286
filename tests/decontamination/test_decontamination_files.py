"""Reading JSONL / gzip / Parquet prompts, cleaned copies, and the ``tulu-jax decontaminate`` command end to end."""

import gzip
import json
import re

import pyarrow
import pyarrow.parquet as parquet
import pytest

from data_pipeline.decontaminate import decontaminate_files, iter_prompts, prompt_text
from data_pipeline.errors import DataError
from tulu_jax.cli import main

EVAL_PROMPTS = [
    "Natalia sold clips to forty eight of her friends in April and then she sold half as many clips in May",
    "Weng earns twelve dollars an hour for babysitting and yesterday she just did fifty minutes of babysitting",
    "Betty is saving money for a new wallet which costs one hundred dollars and she has only half of the money",
]


def chat(user, assistant="Sure."):
    return {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": user},
                         {"role": "assistant", "content": assistant}]}


def write_jsonl(path, records):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    eval_file = write_jsonl(tmp_path / "gsm.jsonl", [{"question": q, "answer": "#### 1"} for q in EVAL_PROMPTS])
    train_records = [
        chat("Tell me a story about a dragon who learns to bake bread in a small village"),
        chat("Solve: " + EVAL_PROMPTS[1] + ". How much did she earn?"),  # line 2: overlaps eval line 2
        chat("What is the capital of France and why is it famous for art and food"),
        chat(EVAL_PROMPTS[0].upper(), assistant=EVAL_PROMPTS[2]),  # line 4: overlaps eval line 1 (assistant text ignored)
        chat("Write a poem about the sea at night with stars and a small boat drifting home"),
    ]
    return tmp_path, eval_file, train_records


def test_prompt_fields_and_auto_detection():
    assert prompt_text(chat("hi"), "auto", "f:1") == "hi"
    two_turns = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                              {"role": "user", "content": "c"}]}
    assert prompt_text(two_turns, "auto", "f:1") == "a\nc"
    assert prompt_text({"question": "q", "answer": "a"}, "auto", "f:1") == "q"
    assert prompt_text({"prompt": "p", "key": 3}, "auto", "f:1") == "p"
    assert prompt_text({"text": "t"}, "text", "f:1") == "t"
    with pytest.raises(DataError, match=r"f:7: no prompt field; expected one of messages"):
        prompt_text({"answer": "a"}, "auto", "f:7")
    with pytest.raises(DataError, match=r"f:2: 'messages' has no user turn"):
        prompt_text({"messages": [{"role": "assistant", "content": "x"}]}, "auto", "f:2")


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "fine"}\n\n{"prompt": broken}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:3: not valid JSON"):
        list(iter_prompts(path))


def test_jsonl_gzip_and_parquet_give_the_same_prompts(files):
    tmp_path, _, records = files
    plain = write_jsonl(tmp_path / "t.jsonl", records)
    zipped = write_jsonl(tmp_path / "t.jsonl.gz", records)
    parquet.write_table(pyarrow.Table.from_pylist(records), tmp_path / "t.parquet")
    expected = [(i + 1, prompt_text(r, "auto", "")) for i, r in enumerate(records)]
    for path in (plain, zipped, tmp_path / "t.parquet"):
        assert list(iter_prompts(path)) == expected


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_write_clean_removes_exactly_the_overlapping_instances(files, suffix):
    tmp_path, eval_file, records = files
    train_file = tmp_path / f"train{suffix}"
    if suffix == ".parquet":
        parquet.write_table(pyarrow.Table.from_pylist(records), train_file)
    else:
        write_jsonl(train_file, records)
    report = decontaminate_files([train_file], [eval_file], clean_dir=tmp_path / "clean", progress=False)
    assert sorted((m.train_line, m.eval_line) for m in report.matches) == [(2, 2), (4, 1)]
    summary, = report.summaries
    assert (summary.overlapped_eval_instances, summary.eval_instances, summary.contaminated) == (2, 3, True)
    cleaned = tmp_path / "clean" / train_file.name
    if suffix == ".parquet":
        kept = parquet.read_table(cleaned).to_pylist()
    else:
        kept = [json.loads(line) for line in (gzip.open if suffix.endswith(".gz") else open)(cleaned, "rt")]
    assert kept == [records[0], records[2], records[4]]


@pytest.mark.parametrize("workers", ["1", "3"])
def test_cli_end_to_end(files, capsys, workers):
    tmp_path, eval_file, records = files
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    exit_code = main(["decontaminate", "--train", str(train_file), "--eval", str(eval_file), "--no-progress",
                      "--workers", workers, "--report", str(tmp_path / "out.tsv"), "--write-clean", str(tmp_path / "clean")])
    out = capsys.readouterr().out
    assert exit_code == 0
    assert "CONTAMINATED" in out and "66.67%" in out
    rows = (tmp_path / "out.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["train_file", "train_line", "eval_file", "eval_line", "matched_fraction"]
    pairs = sorted((row.split("\t")[1], row.split("\t")[3]) for row in rows[1:])
    assert pairs == [("2", "2"), ("4", "1")]
    original = train_file.read_text().splitlines(keepends=True)
    assert (tmp_path / "clean" / "train.jsonl").read_text() == "".join(original[i] for i in (0, 2, 4))


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    train_file = tmp_path / "train.jsonl"
    train_file.write_text('{"messages": [{"role": "user", "content": "hello there"}]}\n{"answer": 3}\n')
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": EVAL_PROMPTS[0]}])
    exit_code = main(["decontaminate", "--train", str(train_file), "--eval", str(eval_file), "--no-progress"])
    assert exit_code == 1
    assert "train.jsonl:2: no prompt field" in capsys.readouterr().err


def test_write_clean_refuses_to_overwrite_its_input(files):
    tmp_path, eval_file, records = files
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    with pytest.raises(DataError, match="would overwrite its input"):
        decontaminate_files([train_file], [eval_file], clean_dir=tmp_path, progress=False)
    assert len(train_file.read_text().splitlines()) == 5


@pytest.mark.parametrize("outputs, refusal", [
    (["--report", "{train}"], "--report .*train.jsonl is the --train file"),
    (["--report", "{eval}"], "--report .*gsm.jsonl is the --eval file"),
    (["--write-clean", "{dir}"], "--write-clean .*train.jsonl is the --train file"),
    (["--write-clean", "{dir}/clean", "--report", "{dir}/clean/train.jsonl"], "--report .* is also the cleaned copy"),
    (["--write-clean", "{dir}/clean", "--train", "{dir}/other/train.jsonl"], "would both be written to"),
])
def test_cli_refuses_outputs_that_are_its_inputs_before_any_work(files, capsys, outputs, refusal):
    """``--report train.jsonl`` used to replace the training file with the TSV (exit 0)."""
    tmp_path, eval_file, records = files
    train_file = write_jsonl(tmp_path / "train.jsonl", records)
    (tmp_path / "other").mkdir()
    write_jsonl(tmp_path / "other" / "train.jsonl", records)
    before = {path: path.read_bytes() for path in (train_file, eval_file, tmp_path / "other" / "train.jsonl")}
    named = [part.format(train=train_file, eval=eval_file, dir=tmp_path) for part in outputs]
    extra_train = named[named.index("--train") + 1:] if "--train" in named else []
    named = named[: named.index("--train")] if "--train" in named else named
    exit_code = main(["decontaminate", "--train", str(train_file), *extra_train, "--eval", str(eval_file),
                      "--no-progress", *named])
    assert exit_code == 1
    assert re.search(refusal, capsys.readouterr().err)
    assert {path: path.read_bytes() for path in before} == before
    assert not (tmp_path / "clean").exists()
