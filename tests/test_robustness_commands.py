"""Commands that refuse their arguments write nothing and print one clean line; a run whose
learning-rate schedule overflows is a diverged run, not a traceback."""

import pytest

from fastopt.experiments import training
from tests.clitools import cli

# (command line after the --out option, fragment of the error line)
REFUSED = [
    (["bench", "update", "--sizes", "-5"], "argument --sizes: sizes must be comma-separated "
                                           "positive whole numbers"),
    (["bench", "update", "--sizes", "1.5e3,2.5"], "argument --sizes"),
    (["bench", "update", "--sizes", ","], "argument --sizes"),
    (["bench", "update", "--optimizers", "foo,adam"], "--optimizers: unknown optimizer(s) "
                                                      "['foo']; choose from adadelta"),
    (["bench", "crossover", "--optimizers", "foo"], "--optimizers: unknown optimizer(s) "
                                                    "['foo']"),
    (["bench", "mlp", "--batch-sizes", "0"], "argument --batch-sizes"),
]


@pytest.mark.parametrize("argv,message", REFUSED, ids=[" ".join(a[:3]) for a, _ in REFUSED])
def test_a_refused_bench_command_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, stdout, stderr = cli([*argv[:2], "--out", str(out), *argv[2:]], capsys)
    assert code == 2
    assert "Traceback" not in stderr
    assert message in stderr.strip().splitlines()[-1], stderr  # one line says it all
    assert not out.exists()  # no settings.json saying "running", no empty CSV


def test_bench_functions_refuse_bad_sizes_and_names():
    from fastopt.bench import update

    with pytest.raises(ValueError, match="sizes must be positive whole numbers"):
        update.bench_update(optimizers=["sgd"], sizes=[-5])
    with pytest.raises(ValueError, match=r"optimizers: unknown optimizer\(s\) \['foo'\]"):
        update.bench_crossover(names=["foo"])


def test_a_schedule_that_overflows_is_a_diverged_run():
    """ExponentialDecay with decay_rate 1e100 overflows at step 4 (from lr 1e-300): the
    run is recorded as diverged, with the reason, like a run whose loss became NaN."""
    data = training.load_data("digits")
    config, = training.configs_from_text("sgd:lr=1e-300")
    run = training.train_run(data, [8], config, 32, 0, max_steps=50,
                             schedule="exponential:decay_steps=1,decay_rate=1e100")
    assert run.diverged
    assert "diverged: ExponentialDecay learning rate overflowed at step 4" in run.note
    assert run.history.records[-1]["step"] < 50


def test_csv_files_are_written_through_unique_temporaries(tmp_path):
    """best.csv went through best.csv.tmp: two writers shared it. Now each has its own."""
    from fastopt import tables

    other = tmp_path / "best.csv.tmp"  # what another writer has half written
    other.write_text("half")
    tables.write_csv([{"a": 1}], tmp_path / "best.csv")
    assert other.read_text() == "half"
    assert (tmp_path / "best.csv").read_bytes() == b"a\r\n1\r\n"  # as before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.csv", "best.csv.tmp"]
