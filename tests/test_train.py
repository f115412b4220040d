import copy
import json
import math
import re
import threading

import pytest
import torch

from minitx.config import ModelConfig, TrainConfig
from minitx.data import EncodedSplit
from minitx.encoder import SentimentClassifier
from minitx.train import (ClassificationTask, Trainer, apply_word_dropout, lr_multiplier, lr_schedule, resolve_device,
                          run_training)
from minitx.train.loop import make_optimizer
from tests.conftest import tiny_config

GOOD, BAD = 10, 11


def synthetic_split(n: int, seed: int) -> EncodedSplit:
    """Reviews of random filler words; positives hold the word GOOD, negatives BAD."""
    g = torch.Generator().manual_seed(seed)
    seqs, labels = [], []
    for i in range(n):
        label = i % 2
        length = int(torch.randint(4, 20, (1,), generator=g))
        body = torch.randint(12, 50, (length,), generator=g).tolist()
        body[int(torch.randint(0, length, (1,), generator=g))] = GOOD if label else BAD
        seqs.append([2] + body)
        labels.append(label)
    return EncodedSplit(seqs, labels, [""] * n)


class Recorder:
    def __init__(self):
        self.events = {"on_step": [], "on_eval": [], "on_epoch_end": [], "on_end": []}

    def __getattr__(self, name):
        if name in ("on_step", "on_eval", "on_epoch_end", "on_end"):
            return self.events[name].append
        raise AttributeError(name)


def make_trainer(callbacks=(), stop=None, model_changes=None, **train_changes):
    torch.manual_seed(0)
    cfg = TrainConfig(**{**dict(epochs=3, batch_size=16, lr=3e-3, seed=0), **train_changes})
    model = SentimentClassifier(tiny_config(**(model_changes or {})))
    task = ClassificationTask(synthetic_split(192, 1), synthetic_split(64, 2), synthetic_split(64, 3), cfg)
    return Trainer(model, task, cfg, torch.device("cpu"), callbacks, stop)


def test_learns_a_synthetic_task_and_fires_every_event():
    recorder = Recorder()
    trainer = make_trainer([recorder])
    result = trainer.fit()
    assert result.status == "finished" and result.reason is None
    assert result.test_accuracy > 0.9
    steps = recorder.events["on_step"]
    assert len(steps) == trainer.total_steps == 3 * 12
    assert [e["step"] for e in steps] == list(range(1, 37))
    for key in ("loss", "lr", "tokens_per_second", "elapsed", "step", "total_steps", "epoch"):
        assert key in steps[0]
    assert len(recorder.events["on_eval"]) == len(recorder.events["on_epoch_end"]) == 3
    assert recorder.events["on_end"] == [pytest.approx(recorder.events["on_end"][0])]
    assert recorder.events["on_end"][0]["status"] == "finished"


def test_reported_test_accuracy_is_the_one_chosen_on_validation():
    result = make_trainer(eval_every=5).fit()
    evals = result.history["evals"]
    assert len(evals) > 3
    chosen = max(evals, key=lambda e: (e["val_accuracy"], -e["val_loss"]))
    assert result.best == chosen
    assert result.test_accuracy == chosen["test_accuracy"]


def test_the_selected_weights_are_the_ones_kept():
    trainer = make_trainer(eval_every=5)
    result = trainer.fit()
    from minitx.data import evaluation_batches
    from minitx.train import evaluate

    again = evaluate(trainer.model, evaluation_batches(trainer.task.test), 64, torch.device("cpu"))
    assert again.accuracy == result.test_accuracy


def test_training_is_deterministic_on_cpu():
    a = make_trainer(word_dropout=0.1, model_changes=dict(dropout=0.2)).fit()
    b = make_trainer(word_dropout=0.1, model_changes=dict(dropout=0.2)).fit()
    assert [e["loss"] for e in a.history["steps"]] == [e["loss"] for e in b.history["steps"]]


def test_stop_flag_is_honoured_within_one_step():
    stop = threading.Event()

    class StopAtSeven:
        def on_step(self, event):
            if event["step"] == 7:
                stop.set()

    result = make_trainer([StopAtSeven()], stop).fit()
    assert result.status == "stopped"
    assert result.steps == 7
    assert "step 7" in result.reason


def test_nan_loss_ends_the_run_as_failed_with_a_reason():
    trainer = make_trainer()
    with torch.no_grad():
        trainer.model.classifier.weight.fill_(float("nan"))
    recorder = Recorder()
    trainer.callbacks.append(recorder)
    result = trainer.fit()
    assert result.status == "failed"
    assert "loss became nan at step 1" in result.reason
    assert result.test_accuracy is None
    assert recorder.events["on_end"][0]["status"] == "failed"


def test_bf16_on_the_cpu_runs_the_matrix_products_in_bf16_keeps_float32_weights_and_still_learns():
    trainer = make_trainer(precision="bf16")
    seen = set()
    trainer.model.classifier.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    result = trainer.fit()
    assert result.status == "finished" and result.test_accuracy > 0.9
    assert torch.bfloat16 in seen                                       # the training steps' products
    assert torch.float32 in seen                                        # evaluation, outside autocast
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    state = trainer.optimizer.state[next(trainer.model.parameters())]
    assert state["exp_avg"].dtype == torch.float32


def test_the_fused_optimiser_takes_the_steps_of_plain_adamw_and_decays_only_matrices():
    """The fused AdamW is a fast path of the same arithmetic: five steps on the very same
    gradients leave the weights where PyTorch's one-parameter-at-a-time AdamW leaves them (the
    same gradients: a key bias's is zero up to rounding, which Adam scales up to full steps)."""
    model = SentimentClassifier(tiny_config(dropout=0.0))
    twin, start = copy.deepcopy(model), copy.deepcopy(model)
    fused = make_optimizer(model, 1e-2, 0.1, torch.device("cpu"))
    assert fused.defaults["fused"]
    matrices = [p for p in twin.parameters() if p.dim() >= 2]
    others = [p for p in twin.parameters() if p.dim() < 2]
    assert others, "the model has biases and norm gains, which must not be decayed"
    plain = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}],
                              lr=1e-2, foreach=False, fused=False)
    for step in range(5):
        ids, labels = torch.randint(3, 50, (8, 12)), torch.randint(0, 2, (8,))
        fused.zero_grad()
        torch.nn.functional.cross_entropy(model(ids), labels).backward()
        for p, q in zip(model.parameters(), twin.parameters()):    # the very same gradients
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    moved = 0.0
    for (name, p), q, p0 in zip(model.named_parameters(), twin.parameters(), start.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, (p - p0).abs().max().item())
    assert moved > 1e-3           # five steps at 1e-2 really moved the weights


def test_a_loss_that_becomes_nan_mid_run_fails_cleanly_and_says_what_to_do():
    """The NaN is forced (its third batch's loss), not hoped for: whether a high learning rate
    diverges depends on the processor's rounding (lr 10 did not on one Intel Xeon)."""
    trainer = make_trainer(lr=10.0, warmup_fraction=0.0)
    real_loss, calls = trainer.task.loss, []

    def loss(*args):
        value, n_tokens = real_loss(*args)
        calls.append(1)
        return (value * float("nan") if len(calls) == 3 else value), n_tokens

    trainer.task.loss = loss
    result = trainer.fit()
    assert result.status == "failed" and result.steps == 2
    assert "loss became nan at step 3 (learning rate " in result.reason
    assert "lower the learning rate" in result.reason


def test_early_stopping_uses_patience(monkeypatch):
    trainer = make_trainer(epochs=10, patience=2)
    val_accuracies = iter([0.6, 0.7, 0.65, 0.69, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])

    def fake_evaluate(model, device, stop=None):
        return {"val_loss": 0.5, "val_accuracy": next(val_accuracies), "test_loss": 0.5, "test_accuracy": 0.5}, None

    monkeypatch.setattr(trainer.task, "evaluate", fake_evaluate)
    result = trainer.fit()
    assert len(result.history["epochs"]) == 4          # epochs 3 and 4 were no better than epoch 2
    assert "stopped early after epoch 4" in result.reason
    assert result.status == "finished" and result.best["val_accuracy"] == 0.7


def reference_lr(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """The reference schedule, as a CS336-style test suite writes it."""
    if it < warmup_iters:
        return it * max_lr / warmup_iters
    if it > cosine_cycle_iters:
        return min_lr
    decay = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_lr + 0.5 * (1 + math.cos(decay * math.pi)) * (max_lr - min_lr)


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_learning_rate_schedule_is_the_reference_warmup_and_cosine_to_a_floor(floor):
    max_lr, total, warmup = 3e-3, 100, 10
    ours = [max_lr * lr_multiplier(t, total, warmup, "cosine", floor) for t in range(total + 5)]
    theirs = [reference_lr(t, max_lr, floor * max_lr, warmup, total) for t in range(total + 5)]
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours[0] == 0.0 and ours[warmup] == max_lr and ours[total] == pytest.approx(floor * max_lr)
    assert lr_multiplier(50, 100, 10, "constant") == 1.0
    cfg = TrainConfig(lr=max_lr, warmup_fraction=0.1, min_lr_fraction=floor)
    assert lr_schedule(cfg, total) == pytest.approx(theirs[:total], abs=1e-12)


def test_word_dropout_only_touches_real_tokens():
    ids = torch.tensor([[2, 5, 6, 7, 0, 0]] * 200)
    dropped = apply_word_dropout(ids, 0.5)
    assert (dropped[:, 0] == 2).all() and (dropped[:, 4:] == 0).all()
    share = (dropped[:, 1:4] == 1).float().mean().item()
    assert 0.4 < share < 0.6


def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_a_tiny_model_on_imdb_clearly_beats_chance(trained_runs):
    """The real pipeline, end to end (conftest's tiny run): IMDB subset, tokenizer, model,
    training, checkpoint."""
    metrics = json.loads((trained_runs / "tiny" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["test_accuracy"] >= 0.70, metrics["test_accuracy"]
    assert metrics["test_size"] == 500 and metrics["train_size"] == 2000
    assert sum(map(sum, metrics["confusion"])) == 500
    assert (trained_runs / "tiny" / "model.safetensors").is_file()
    assert not math.isnan(metrics["val_accuracy"])


def test_a_tiny_language_model_beats_a_unigram_model_on_held_out_text(trained_runs):
    """conftest's lm-tiny run: bits per character on test reviews, below what knowing each
    token's frequency alone needs, and an evaluation (with a sample) before the first step."""
    metrics = json.loads((trained_runs / "lm-tiny" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["task"] == "lm"
    assert metrics["test_bits_per_char"] < metrics["baselines"]["unigram"], metrics["baselines"]
    evals = metrics["history"]["evals"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == metrics["steps"]
    assert evals[0]["val_bits_per_char"] > evals[-1]["val_bits_per_char"]
    assert all(e["sample"].startswith("This movie") for e in evals)
    assert metrics["test_perplexity"] == pytest.approx(math.exp(metrics["test_loss"]))


def test_a_stop_during_an_evaluation_ends_it_within_one_batch():
    stop = threading.Event()
    trainer = make_trainer(stop=stop)

    class StopAtEpochEnd:      # set on the last step of epoch 1: the epoch-end evaluation sees it
        def on_step(self, event):
            if event["step"] == trainer.steps_per_epoch:
                stop.set()

    trainer.callbacks.append(StopAtEpochEnd())
    result = trainer.fit()
    assert result.status == "stopped" and "during an evaluation" in result.reason
    assert result.steps == trainer.steps_per_epoch
    assert trainer.history["evals"] == [] and result.test_accuracy is None


def test_confidently_wrong_lists_the_most_confident_mistakes_first():
    from minitx.train import confidently_wrong

    split = EncodedSplit([[2]] * 4, [0, 1, 0, 1], ["a", "b", "c", "d" * 2000])
    probabilities = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.05, 0.95]])
    wrong = confidently_wrong(probabilities, split, k=5, max_chars=100)
    assert [w["text"][:1] for w in wrong] == ["b", "c"]        # d and a were right
    assert wrong[0] == {"text": "b", "truncated": False, "label": 1, "p_positive": 0.2}


def test_run_training_records_phases_and_attention_snapshots(imdb, tmp_path):
    phases = []

    class Phases:
        def on_phase(self, event):
            phases.append(event["phase"])

    model_cfg = ModelConfig(d_model=32, n_heads=2, n_kv_heads=1, n_layers=2, d_ff=64, max_len=64)
    train_cfg = TrainConfig(train_size=200, test_size=100, vocab_size=2000, epochs=2, batch_size=32)
    outcome = run_training(model_cfg, train_cfg, [Phases()], checkpoint_dir=tmp_path, run_name="snap")
    assert phases == ["preparing data", "training", "saving"]
    snaps = outcome.metrics["attention_snapshots"]
    assert snaps["steps"][0] == 0 and snaps["steps"][-1] == outcome.result.steps
    assert snaps["steps"] == sorted(set(snaps["steps"]))
    for eval_event in outcome.result.history["evals"]:
        assert eval_event["step"] in snaps["steps"]
    maps = torch.tensor(snaps["maps"])                       # (S, L, H, T, T)
    assert maps.shape[1:3] == (2, 2) and maps.shape[3] == maps.shape[4] == len(snaps["tokens"])
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=0.01, rtol=0)
    assert not torch.equal(maps[0], maps[-1])                 # training changed the attention
    # stored as written numbers of 3 decimals (0.036, not float32's 0.035999998450279236)
    assert not re.search(r"\d\.\d{4,}", json.dumps(snaps["maps"]))
    assert len(outcome.metrics["confidently_wrong"]) <= 8
