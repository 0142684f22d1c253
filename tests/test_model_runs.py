"""Runs of every model (issue 15 items 2-3): exact resume with dropout and a learning-rate
schedule, the schedule itself, two trainings in two threads of one process, every combination of
model, layers, streams, type and data trained and resumed, uniform initialisation, and a sweep
over models. The network's numerics are tested in test_model.py, gradients in test_gradcheck.py.
"""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest
from conftest import CELLS, random_text

from a4lib import Config, Trainer, cli, load_corpus, train
from a4lib import checkpoint as ckpt
from a4lib.model import Network, reference
from a4lib.model.kernels import available

BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not available(), reason="numba is not installed"))]


def run_files(out) -> tuple[dict, dict]:
    """A run's checkpoint arrays and metadata, without the wall-clock times."""
    arrays, meta = ckpt.load_arrays(out / ckpt.CHECKPOINT)
    arrays.pop("seconds")
    for key in ("seconds", "config"):
        meta.pop(key)
    return arrays, meta


def assert_same_run(a, b) -> None:
    """Two run directories hold the same run, bit for bit (times aside)."""
    (arrays_a, meta_a), (arrays_b, meta_b) = run_files(a), run_files(b)
    assert set(arrays_a) == set(arrays_b)
    for k in arrays_a:
        assert arrays_a[k].dtype == arrays_b[k].dtype, k
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k], err_msg=k)
    assert meta_a == meta_b


def tweets_file(path, n: int = 24):
    """A tweet JSON (a list of objects with a "text"; HTML entities decoded by the corpus)."""
    rng = np.random.default_rng(5)
    words = ["hi", "news", "today", "big", "cat", "&amp;", "ok", "wow"]
    path.write_text(json.dumps([{"text": " ".join(rng.choice(words, size=rng.integers(2, 5))), "id_str": str(i)}
                                for i in range(n)]), encoding="utf-8")
    return path


# --- exact resume with dropout and a schedule -------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_resume_with_dropout_and_schedule_is_bit_exact(tmp_path, cell, backend):
    """Two layers, dropout 0.3, eta halved at the end of every epoch, held-out evaluation and
    samples: 60 updates, then resumed to 120 (over two more epoch ends), equal the uninterrupted
    120 bit for bit: parameters, best parameters, states, optimizer state, history, samples and
    the generator."""
    path = tmp_path / "t.txt"
    path.write_text(random_text(500), encoding="utf-8")
    cfg = Config(corpus=str(path), model=cell, layers=2, dropout=0.3, m=8, seq_length=10, n_updates=120,
                 lr_decay=0.5, lr_decay_after=1, val_fraction=0.1, val_every=20, sample_every=40, sample_length=10,
                 backend=backend, seed=2)
    train(cfg, tmp_path / "whole", progress=False)
    train(cfg.replace(n_updates=60), tmp_path / "split", progress=False)
    resumed = Trainer.resume(tmp_path / "split", cfg)
    assert resumed.updates == 60 and resumed.epoch == 1 and resumed.opt.eta == 0.05
    resumed.run(progress=False)
    assert resumed.epoch == 2 and resumed.opt.eta == cfg.eta_after(2) == 0.025
    assert_same_run(tmp_path / "whole", tmp_path / "split")


# --- the learning-rate schedule ---------------------------------------------------------------------

def test_eta_after_is_char_rnns_decay_per_epoch():
    """eta_after(e): eta times lr_decay once for every finished epoch from lr_decay_after on."""
    cfg = Config(eta=0.2, lr_decay=0.5, lr_decay_after=3)
    assert [cfg.eta_after(e) for e in range(6)] == [0.2, 0.2, 0.2, 0.1, 0.05, 0.025]
    assert [Config(eta=0.1).eta_after(e) for e in (0, 5, 50)] == [0.1, 0.1, 0.1]  # lr_decay 1: constant
    once = Config(eta=0.1, lr_decay=0.9, lr_decay_after=1)
    assert once.eta_after(1) == pytest.approx(0.09) and once.eta_after(4) == pytest.approx(0.1 * 0.9 ** 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_trainer_updates_with_the_scheduled_eta(tmp_path, tiny_config, backend):
    """With lr_decay 0.5 from epoch 1 the trainer's updates equal the handout's update
    (reference.adagrad_step) along the handout's walk with eta = cfg.eta_after(epoch): 4 updates
    an epoch, 11 updates over three epochs; the optimizer's eta follows the epochs."""
    n, L, N = 23, 5, 11
    path = tmp_path / "t.txt"
    path.write_text(random_text(n), encoding="utf-8")
    cfg = tiny_config(path, seq_length=L, n_updates=N, m=6, sig=0.5, eta=0.3, clip=0.5, lr_decay=0.5,
                      lr_decay_after=1, backend=backend)
    trainer = Trainer(cfg, tmp_path / "run")
    params = {k: v.copy() for k, v in trainer.params.items()}
    mem = {k: np.zeros_like(v) for k, v in params.items()}
    etas = []
    step = trainer.opt.step

    def recording_step(*args):
        etas.append(trainer.opt.eta)
        return step(*args)

    trainer.opt.step = recording_step
    trainer.run(progress=False)
    assert etas == [0.3] * 4 + [0.15] * 4 + [0.075] * 3
    ids, h = trainer.ids, np.zeros(6)
    for u in range(N):
        e = (u % 4) * L
        if e == 0:
            h = np.zeros(6)
        _, h = reference.adagrad_step(params, mem, ids[e:e + L], ids[e + 1:e + L + 1], h, eta=cfg.eta_after(u // 4),
                                      clip=0.5)
    for k in params:
        np.testing.assert_allclose(trainer.params[k], params[k], rtol=0, atol=1e-10, err_msg=k)


# --- two trainings in two threads of one process ----------------------------------------------------

THREAD_PAIRS = {
    # other cells, optimizers, dropout and seeds, but the same m, T, B and type: every scratch
    # array the two networks have in common (the output layer's, the masks, dL/dh) has one shape
    "lstm+gru": [dict(model="lstm", dropout=0.2, optimizer="adam", eta=0.01),
                 dict(model="gru", dropout=0.1, seed=3)],
    # one model twice with other seeds and eta: the optimizers' work vectors have one size too
    "gru+gru": [dict(model="gru", dtype="float32", seed=1), dict(model="gru", dtype="float32", seed=2, eta=0.05)],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pair", sorted(THREAD_PAIRS))
def test_two_trainings_in_two_threads_equal_each_alone(tmp_path, pair, backend):
    """Two 2-layer runs (B 4, held-out evaluation) trained at the same time in two threads of
    this process (the interpreter switching threads every 10 us; the compiled cells release the
    GIL) give the parameters, losses and held-out losses each gives when trained alone.

    Measured: with the networks' workspaces made one shared dict, every case fails; an
    optimizer work vector shared by the two numpy AdaGrads is used only for microseconds per
    update and fails gru+gru-numpy only now and then (the fused compiled step has none)."""
    path = tmp_path / "t.txt"
    path.write_text(random_text(3000), encoding="utf-8")
    common = dict(corpus=str(path), layers=2, m=16, seq_length=20, batch_size=4, sample_every=0, backend=backend,
                  val_fraction=0.1, val_every=40, n_updates=120)
    cfgs = [Config(**common, **settings) for settings in THREAD_PAIRS[pair]]
    alone = []
    for i, cfg in enumerate(cfgs):
        trainer = Trainer(cfg, tmp_path / f"alone{i}")
        trainer.run(progress=False)
        alone.append(trainer)
    together = [Trainer(cfg, tmp_path / f"together{i}") for i, cfg in enumerate(cfgs)]
    errors = []

    def run(trainer):
        try:
            trainer.run(progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=run, args=(trainer,)) for trainer in together]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors
    for a, b in zip(alone, together):
        assert b.updates == 120
        np.testing.assert_array_equal(b.w, a.w)
        assert b.loss_hist == a.loss_hist and b.val_hist == a.val_hist


# --- every combination trains and resumes -----------------------------------------------------------

DATA = [("held-out", 1), ("held-out", 4), ("chunks", 1), ("chunks", 4), ("tweets", 1)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("data, B", DATA)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_every_combination_trains_and_resumes(tmp_path, cell, layers, data, B, dtype):
    """model x layers x streams x type x (held-out 10 % of a text | shuffled chunks | tweets with
    held-out tweets), the default backend, dropout 0.25 with two layers, eta decayed every epoch,
    samples: 12 updates train (finite losses, held-out losses recorded, the parameters in their
    type) and 8 updates resumed to 12 (samples every 3: not aligned) equal them bit for bit."""
    if data == "tweets":
        corpus = tweets_file(tmp_path / "t.json")
        extra = dict(val_fraction=0.2)
    else:
        corpus = tmp_path / "t.txt"
        corpus.write_text(random_text(300), encoding="utf-8")
        extra = dict(val_fraction=0.1) if data == "held-out" else dict(order="chunks", chunk_length=30)
    cfg = Config(corpus=str(corpus), model=cell, layers=layers, dropout=0.25 if layers == 2 else 0.0, m=6,
                 seq_length=6, batch_size=B, dtype=dtype, n_updates=12, val_every=4, lr_decay=0.7, lr_decay_after=1,
                 sample_every=3, sample_length=8, **extra)
    summary = train(cfg, tmp_path / "whole", progress=False)
    assert summary["status"] == "finished" and summary["updates"] == 12
    arrays, _ = ckpt.load_arrays(tmp_path / "whole" / ckpt.CHECKPOINT)
    assert np.isfinite(arrays["loss"]).all() and arrays["w"].dtype == np.dtype(dtype)
    if data != "chunks":
        assert arrays["val_update"].tolist() == [4, 8, 12] and np.isfinite(arrays["val_loss"]).all()
    train(cfg.replace(n_updates=8), tmp_path / "split", progress=False)
    train(cfg, tmp_path / "split", resume=True, progress=False)
    assert_same_run(tmp_path / "whole", tmp_path / "split")


# --- initialisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS)
def test_uniform_initialisation_of_a_run(tmp_path, small_text, cell):
    """init uniform, init_range 0.05: a run's first parameters are Network.init_params with the
    run's seed, every weight within +-0.05; the handout's default stays N(0, sig^2)."""
    cfg = Config(corpus=str(small_text), model=cell, layers=2, m=10, init="uniform", init_range=0.05, seed=4,
                 n_updates=1, sample_every=0, backend="numpy")
    trainer = Trainer(cfg, tmp_path / "u")
    expected = Network(cell, trainer.corpus.K, 10, layers=2).init_params(np.random.default_rng(4), init="uniform",
                                                                         init_range=0.05)
    for k, v in expected.items():
        np.testing.assert_array_equal(trainer.params[k], v, err_msg=k)
    weights = np.concatenate([v.ravel() for k, v in trainer.params.items() if k[0] in "UWV"])
    assert np.abs(weights).max() <= 0.05 and weights.std() > 0.025
    default = Trainer(cfg.replace(init="normal"), tmp_path / "n")
    assert Config().init == "normal"
    assert np.std(default.params["W"]) == pytest.approx(0.01, rel=0.2)


# --- a sweep over models ----------------------------------------------------------------------------

def test_sweep_over_models_trains_each_as_train_would(tmp_path, capsys):
    """`a4lib sweep --grid model=rnn,gru` (2 layers, dropout): exit 0, one finished run per model,
    each holding the parameters `a4lib train` gives with the same settings."""
    path = tmp_path / "t.txt"
    path.write_text(random_text(600), encoding="utf-8")
    flags = ["--corpus", str(path), "--m", "8", "--seq-length", "10", "--updates", "30", "--layers", "2",
             "--dropout", "0.2", "--sample-every", "0", "--backend", "numpy"]
    assert cli.main(["sweep", "--out", str(tmp_path / "sw"), "--grid", "model=rnn,gru", "--workers", "2", "--quiet",
                     *flags]) == 0
    capsys.readouterr()
    entries = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert {e["name"]: e["summary"]["status"] for e in entries} == {"model=rnn": "finished", "model=gru": "finished"}
    for model in ("rnn", "gru"):
        run = tmp_path / "sw" / f"model={model}"
        assert json.loads((run / "config.json").read_text())["model"] == model
        assert cli.main(["train", "--out", str(tmp_path / model), "--model", model, "--quiet", *flags]) == 0
        swept, _ = ckpt.load_params(run, "last")
        direct, _ = ckpt.load_params(tmp_path / model, "last")
        assert set(swept) == set(direct) and "W2" in swept
        for k in direct:
            np.testing.assert_array_equal(swept[k], direct[k], err_msg=k)
    assert load_corpus(path).K == swept["V"].shape[0]
