"""Training on more than the easy case: many classes, imbalance, long texts, divergence, and
the cross-validated choice of the recipe. Tiny random body: fast."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from samples import run

from fastclf import Classifier
from fastclf.chunking import Chunker, window_of
from fastclf.config import LongTexts
from fastclf.data import LabeledData
from fastclf.errors import TrainingError
from fastclf.training.finetune import BalancedSupConLoss, embed_by_length
from fastclf.training.selection import (
    EPOCH_CHOICES,
    MIN_STEPS_PER_EPOCH,
    describe,
    planned_epochs,
    settles,
    steps_per_epoch,
)
from fastclf.training.trainer import TrainConfig, train

TOPICS = {
    "sport": ["the striker scored twice", "a late goal won the match", "the keeper saved a penalty",
              "the team lost the final", "fans cheered the winning goal", "a red card for a late tackle"],
    "food": ["the soup was too salty", "fresh bread and butter", "a spicy curry with rice",
             "the cake tasted of lemon", "grilled fish with herbs", "the pasta was overcooked"],
    "money": ["stocks fell sharply today", "the bank raised interest rates", "bond yields climbed again",
              "the company reported record profits", "inflation slowed in march", "the market closed higher"],
    "weather": ["heavy rain is expected tonight", "a heatwave hit the south", "snow closed the mountain roads",
                "strong winds toppled trees", "a sunny and mild weekend", "fog delayed the morning flights"],
    "music": ["the band released a new album", "a violin concerto in d major", "the singer cancelled the tour",
              "the drummer played a long solo", "tickets for the concert sold out", "a jazz trio at the club"],
    "health": ["the flu season started early", "a new vaccine was approved", "doctors urged more exercise",
               "the hospital opened a new ward", "a study on sleep and memory", "the clinic offers free checkups"],
    "travel": ["the train to paris was late", "a cheap flight to lisbon", "the hotel had a sea view",
               "we hiked along the coast", "the museum was closed on monday", "a ferry to the islands"],
    "tech": ["the phone has a faster chip", "a bug crashed the app", "the laptop battery lasts all day",
             "the update fixed the wifi", "a new programming language", "the server went down overnight"],
}


class _Identity(torch.nn.Module):
    """A 'body' whose embedding is its input: lets the loss be tested on chosen vectors."""

    def forward(self, features):
        return {"sentence_embedding": features["x"]}


def _loss(x: torch.Tensor, labels: list[int]) -> torch.Tensor:
    return BalancedSupConLoss(_Identity())([{"x": x}], torch.tensor(labels))


def test_loss_skips_anchors_without_positives_instead_of_nan():
    torch.manual_seed(0)
    x = torch.randn(6, 8, requires_grad=True)
    loss = _loss(x, [0, 0, 1, 2, 3, 4])  # four anchors are alone with their class
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert _loss(torch.randn(4, 8), [0, 1, 2, 3]).item() == pytest.approx(0.0)  # no positive pair at all


def test_loss_matches_setfit_supcon_when_every_anchor_has_a_positive():
    from setfit.losses import SupConLoss

    torch.manual_seed(1)
    x = torch.randn(8, 16)
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    ours = _loss(x, labels)
    theirs = SupConLoss(_Identity())([{"x": x}], torch.tensor(labels))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_loss_stops_on_non_finite_embeddings():
    with pytest.raises(TrainingError, match="non-finite"):
        _loss(torch.full((4, 8), float("nan")), [0, 0, 1, 1])


def test_length_groups_give_the_whole_batch_embeddings_and_gradients(tiny_body_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_body_dir), device="cpu").eval()  # eval: no dropout, so comparable
    texts = [t for v in TOPICS.values() for t in v][:13] + ["a much longer text " * 12, "ok"]
    features = getattr(model, "preprocess", model.tokenize)(texts)
    assert features["attention_mask"].sum(dim=1).min() < features["attention_mask"].shape[1]  # padding to cut
    labels = torch.tensor([i % 4 for i in range(len(texts))])

    def run_loss(group: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        emb = embed_by_length(model, dict(features), group)
        BalancedSupConLoss(model, group=group)([dict(features)], labels).backward()
        return emb.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole, whole_grads = run_loss(0)
    for group in (1, 4, 5):
        emb, grads = run_loss(group)
        np.testing.assert_allclose(emb.numpy(), whole.numpy(), atol=1e-5)
        assert len(grads) == len(whole_grads)
        for g, w in zip(grads, whole_grads):
            np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-5, rtol=1e-4)
    left = {k: v.flip(dims=[1]) if torch.is_tensor(v) and v.dim() == 2 else v for k, v in features.items()}  # left padding: run whole
    np.testing.assert_allclose(embed_by_length(model, left, 4).detach().numpy(),
                               model(dict(left))["sentence_embedding"].detach().numpy(), atol=1e-6)


def _data(classes: dict[str, list[str]], counts: dict[str, int] | None = None) -> LabeledData:
    texts, labels = [], []
    for label, examples in classes.items():
        k = (counts or {}).get(label, len(examples))
        texts += examples[:k]
        labels += [label] * k
    return LabeledData(texts, labels, source="topics")


def test_eight_classes_train_and_predict_their_labels(minilm_dir):
    train_part = _data({k: v[:5] for k, v in TOPICS.items()})
    held_out = {k: v[5] for k, v in TOPICS.items()}
    result = train(train_part, TrainConfig(model=str(minilm_dir), num_epochs=1, head_c=10.0, show_progress=False))
    clf = result.classifier
    proba = clf.predict_proba(train_part.texts)
    assert proba.shape == (40, 8) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    predicted = clf.predict(list(held_out.values()))
    assert sum(p == t for p, t in zip(predicted, held_out)) >= 7, dict(zip(held_out, predicted))


def _planned(n: int, batch_size: int = 16) -> tuple[int, ...]:
    return tuple(planned_epochs(e, steps_per_epoch(n, batch_size)) for e in EPOCH_CHOICES)


def test_small_sets_run_at_least_the_floor_of_optimizer_steps():
    assert steps_per_epoch(24, 16) == 2 and steps_per_epoch(16, 16) == 1 and steps_per_epoch(0, 16) == 1
    assert planned_epochs(0, 1) == 0
    for n in (8, 16, 24, 64, 72, 133, 292, 1000):
        per_epoch = steps_per_epoch(n, 16)
        for e in (1, 2, 4):
            planned = planned_epochs(e, per_epoch)
            assert planned >= e and planned * per_epoch >= e * MIN_STEPS_PER_EPOCH
            # never more than one epoch beyond the floor, and a large set runs the epochs as chosen
            assert (planned - 1) * per_epoch < e * MIN_STEPS_PER_EPOCH or planned == e
    assert planned_epochs(4, steps_per_epoch(24, 16)) == 16 and planned_epochs(4, steps_per_epoch(292, 16)) == 4


def test_imbalanced_classes_train(tiny_body_dir):
    big = {"sport": TOPICS["sport"] * 7, "food": TOPICS["food"]}  # 42 against 2
    data = _data(big, {"sport": 42, "food": 2})
    result = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False))
    # the rare class has 2 examples: two folds are still possible (the first may settle it alone)
    assert result.selection.reason == "cross-validation" and result.selection.folds in (1, 2)
    assert np.isfinite(result.classifier.predict_proba(data.texts)).all()
    assert set(result.classifier.predict(data.texts)) <= {"sport", "food"}


@pytest.mark.parametrize("class_weight", ["balanced", "none"])
def test_head_weighs_classes_by_their_counts_unless_told_not_to(minilm_dir, class_weight):
    from sklearn.linear_model import LogisticRegression

    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")}, {"sport": 6, "food": 6, "money": 2})
    result = train(data, TrainConfig(model=str(minilm_dir), finetune="never", head_c=1.0, class_weight=class_weight,
                                     show_progress=False))
    clf = result.classifier
    y = np.array([list(data.classes).index(label) for label in data.labels])
    emb = clf.embed(data.texts)
    ref = LogisticRegression(C=1.0, max_iter=1000, random_state=42,
                             class_weight=None if class_weight == "none" else "balanced").fit(emb, y)
    np.testing.assert_allclose(clf.predict_proba(TOPICS["money"]), ref.predict_proba(clf.embed(TOPICS["money"])),
                               atol=1e-6)
    assert clf.config.training.settings["class_weight"] == class_weight
    with pytest.raises(Exception, match="class weight"):
        TrainConfig(class_weight="inverse")


def test_recipe_is_chosen_by_cross_validation_and_recorded(tiny_body_dir, tmp_path):
    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")})
    result = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False))
    sel = result.selection
    choices = _planned(len(data))
    assert set(sel.scores) == {str(e) for e in choices}
    assert sel.epochs in choices and sel.reason == "cross-validation"
    assert sel.steps == sel.epochs * steps_per_epoch(len(data), 16)
    assert sel.scores[str(sel.epochs)] == max(sel.scores.values())
    path = result.classifier.save(tmp_path / "m")
    recorded = json.loads((path / "fastclf.json").read_text())["training"]["selection"]
    assert recorded["epochs"] == sel.epochs and "cross-validated accuracy" in recorded["description"]


def test_never_finetune_is_the_untuned_body(tiny_body_dir, minilm_dir):
    data = _data({k: TOPICS[k] for k in ("sport", "food")})
    result = train(data, TrainConfig(model=str(tiny_body_dir), finetune="never", head_c=1.0, show_progress=False))
    assert result.selection.epochs == 0 and not result.selection.finetuned


def test_divergence_stops_with_one_line_and_writes_nothing(tmp_path, tiny_body_dir):
    csv = tmp_path / "d.csv"
    pd.DataFrame({"text": TOPICS["sport"] + TOPICS["food"], "label": ["s"] * 6 + ["f"] * 6}).to_csv(csv, index=False)
    out = tmp_path / "model"
    code, text = run("train", csv, "-o", out, "--model", tiny_body_dir, "--epochs", "3", "--head-c", "1",
                     "--set", "body_learning_rate=1e30", "-q")
    assert code == 1
    assert "non-finite" in text and "Traceback" not in text
    assert not out.exists()


LONG = " ".join(f"word{i} the match went on and the team played" for i in range(120))


def test_chunker_cuts_long_texts_into_windows(tiny_body_dir):
    clf = train(_data({k: TOPICS[k] for k in ("sport", "food")}),
                TrainConfig(model=str(tiny_body_dir), num_epochs=0, head_c=1.0, show_progress=False)).classifier
    tokenizer, window = window_of(clf.body)
    assert window == 126  # the tiny body's 128 tokens less [CLS] and [SEP]
    chunker = Chunker(tokenizer, window, max_chunks=3)
    pieces = chunker.split(["short text", LONG])
    assert pieces.texts[0] == "short text" and pieces.n_long == 1
    assert len(pieces.texts) == 4 and list(pieces.owner) == [0, 1, 1, 1]  # capped at 3 evenly spaced windows
    for piece in pieces.texts[1:]:
        assert len(tokenizer.encode(piece, add_special_tokens=False).ids) <= window


def test_long_texts_are_embedded_whole_and_the_same_in_every_variant(tiny_body_dir, tmp_path):
    from fastclf.accelerate.export import accelerate

    data = _data({k: TOPICS[k] for k in ("sport", "food")})
    clf = train(data, TrainConfig(model=str(tiny_body_dir), num_epochs=1, head_c=1.0, show_progress=False)).classifier
    path = clf.save(tmp_path / "m")
    torch_clf = Classifier.load(path)
    tail_changed = LONG + " " + "bread soup cake " * 150  # differs only after the first window
    emb = torch_clf.embed([LONG, tail_changed])
    assert not np.allclose(emb[0], emb[1], atol=1e-4)  # the words past the window count
    truncating = Classifier.load(path)
    truncating.config = truncating.config.model_copy(update={"long_texts": LongTexts(mode="truncate")})
    emb_t = truncating.embed([LONG, tail_changed])
    np.testing.assert_allclose(emb_t[0], emb_t[1], atol=1e-6)  # truncation sees the first window only
    accelerate(path, ["onnx-fp32"], calibration_texts=data.texts, max_accuracy_loss=100)
    onnx_clf = Classifier.load(path, variant="onnx-fp32")
    np.testing.assert_allclose(onnx_clf.embed([LONG, tail_changed, "short"]),
                               torch_clf.embed([LONG, tail_changed, "short"]), atol=1e-4)


def test_multi_label_trains_with_cross_validation(tiny_body_dir, tmp_path):
    texts, labels = [], []
    for i in range(6):
        texts += [TOPICS["sport"][i], TOPICS["food"][i], f"{TOPICS['sport'][i]} and {TOPICS['food'][i]}"]
        labels += [["sport"], ["food"], ["food", "sport"]]
    data = LabeledData(texts, labels, multi_label=True, source="ml")
    result = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False))
    assert result.info["loss"] == "pairs" and result.selection.reason == "cross-validation"
    clf = result.classifier
    assert clf.multi_label and list(clf.classes_) == ["food", "sport"]
    predicted = clf.predict(texts)
    assert all(isinstance(p, list) and set(p) <= {"food", "sport"} for p in predicted)
    back = Classifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_allclose(back.predict_proba(texts), clf.predict_proba(texts), atol=1e-5)


def test_first_fold_settles_only_a_clear_difference():
    assert settles(0.50, 0.90, held_out=32) and settles(0.90, 0.50, held_out=32)
    assert not settles(0.60, 0.66, held_out=32)  # 2 texts of 32: noise
    assert settles(0.60, 0.66, held_out=2000)  # the same gap on many texts is real


def test_finetuning_keeps_embeddings_and_frozen_layers_fixed(tiny_body_dir):
    from sentence_transformers import SentenceTransformer

    from fastclf.training.finetune import finetune

    st = SentenceTransformer(str(tiny_body_dir), device="cpu")
    bert = st[0].auto_model
    before = {name: p.detach().clone() for name, p in bert.named_parameters()}
    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")})
    labels = [["sport", "food", "money"].index(label) for label in data.labels]
    finetune(st, data.texts, labels, loss="supcon", epochs=2, batch_size=8, learning_rate=1e-3, seed=0, bf16=False,
             freeze_layers=1)
    changed = {name for name, p in bert.named_parameters() if not torch.equal(p, before[name])}
    assert not any(name.startswith(("embeddings.word_embeddings", "encoder.layer.0.")) for name in changed)
    assert any(name.startswith("encoder.layer.1.") for name in changed)
    assert all(p.requires_grad for p in bert.parameters())  # restored after training


def _pid_and_square(x: int) -> tuple[int, int]:
    import os

    return os.getpid(), x * x


def test_forked_jobs_return_in_order_from_other_processes():
    import functools
    import os

    from fastclf.training.forked import run_forked

    out = run_forked([functools.partial(_pid_and_square, x) for x in (2, 3, 4)], threads_each=1)
    assert [sq for _pid, sq in out] == [4, 9, 16]
    assert all(pid != os.getpid() for pid, _sq in out) and len({pid for pid, _sq in out}) == 3


def _fails(message: str) -> None:
    raise ValueError(message)


def test_forked_job_error_comes_back_as_one_training_error():
    import functools

    from fastclf.errors import TrainingError
    from fastclf.training.forked import run_forked

    with pytest.raises(TrainingError, match="ValueError: fold 2 broke"):
        run_forked([functools.partial(_pid_and_square, 1), functools.partial(_fails, "fold 2 broke")], threads_each=1)


def test_folds_side_by_side_score_like_one_after_the_other(tiny_body_dir):
    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")})
    side = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, cv_parallel=True)).selection
    seq = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, cv_parallel=False)).selection
    assert side.folds == 2 and seq.folds in (1, 2)  # one after the other, a decisive first fold may end it
    assert set(side.scores) == set(seq.scores) == {str(e) for e in _planned(len(data))}
    for e in side.scores:  # the same folds and seeds; only the thread count differs (float sums in another order)
        assert side.scores[e] == pytest.approx(seq.scores[e], abs=0.1)


def test_cross_validation_embeddings_in_bf16_stay_near_fp32_and_the_saved_ones_stay_fp32(minilm_dir):
    """``cv_bf16``: the folds' embeddings may run under bf16 autocast (where the CPU has native
    bf16); they must stay close to fp32 ones, and the embeddings the saved head is fit on must not change."""
    from fastclf.backends._pooling import row_cosines
    from fastclf.training.trainer import _Embedder, _load_body

    body = _load_body(str(minilm_dir))
    texts = [t for k in ("sport", "food", "money") for t in TOPICS[k][:4]] + ["a much longer text " * 200]
    config = TrainConfig(model=str(minilm_dir))
    fp32 = _Embedder(config, body, bf16=False)
    bf16 = _Embedder(config, body, bf16=True)
    quick32, quick16 = fp32(body, texts, quick=True), bf16(body, texts, quick=True)
    assert quick16.dtype == np.float32 and np.isfinite(quick16).all()
    assert row_cosines(quick32, quick16).min() > 0.99
    np.testing.assert_array_equal(bf16(body, texts), fp32(body, texts))


def test_training_records_whether_the_cross_validation_embedded_in_bf16(tiny_body_dir):
    from fastclf.machine import cpu_has_bf16

    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")})
    off = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, cv_bf16=False, finetune="never"))
    on = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, finetune="never"))
    assert off.classifier.config.training.settings["cv_bf16"] is False
    assert on.classifier.config.training.settings["cv_bf16"] is cpu_has_bf16()


def test_average_into_sets_the_mean_of_the_fold_snapshots_and_keeps_fixed_weights(tmp_path):
    from fastclf.training.selection import average_into

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    fixed = model[1].weight.detach().clone()
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    np.savez(tmp_path / "a.npz", **{"0.weight": a.numpy(), "0.bias": np.array([1.0, 2.0], dtype=np.float32)})
    np.savez(tmp_path / "b.npz", **{"0.weight": b.numpy(), "0.bias": np.array([3.0, 6.0], dtype=np.float32)})
    average_into(model, [tmp_path / "a.npz", tmp_path / "b.npz"])
    torch.testing.assert_close(model[0].weight.detach(), (a + b) / 2)
    torch.testing.assert_close(model[0].bias.detach(), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(model[1].weight.detach(), fixed, rtol=0, atol=0)
    assert model[0].weight.dtype == torch.float32


def test_averaged_folds_are_the_body_and_no_final_fine_tuning_runs(tiny_body_dir, tmp_path):
    from fastclf.training.trainer import _load_body

    data = _data({k: TOPICS[k] for k in ("sport", "food", "money")})
    said: list[str] = []
    result = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, finetune="always",
                                     average_folds=True), progress=said.append)
    sel = result.selection
    assert sel.finetuned and sel.averaged and sel.final_body == "average of 2 folds" and sel.folds == 2
    assert not any(m.startswith("fine-tuning on all") for m in said)
    assert any("average of the fold bodies" in m for m in said)
    untuned = dict(_load_body(str(tiny_body_dir)).named_parameters())
    tuned = dict(result.classifier.body.model.named_parameters())
    moved = [n for n, p in tuned.items() if not torch.equal(p.detach(), untuned[n].detach())]
    assert moved and all("word_embeddings" not in n for n in moved)  # fine-tuned, token embeddings fixed
    assert np.isfinite(result.classifier.predict_proba(data.texts)).all()
    path = result.classifier.save(tmp_path / "m")
    recorded = json.loads((path / "fastclf.json").read_text())["training"]["selection"]
    assert recorded["final_body"] == "average of 2 folds"
    # without averaging the same folds choose the same, and a final fine-tuning makes the body
    plain = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, finetune="always",
                                    average_folds=False)).selection
    assert not plain.averaged and plain.final_body == "all examples"
    assert (plain.epochs, plain.head_c, plain.scores) == (sel.epochs, sel.head_c, sel.scores)


def test_folds_too_small_to_contrast_never_claim_a_fine_tuning(tiny_body_dir):
    from fastclf.training.selection import can_contrast
    from fastclf.training.trainer import _load_body

    assert can_contrast([0, 0, 1, 1]) and not can_contrast([0, 1, 2, 3]) and not can_contrast([0, 0, 1, 2])
    # 2 examples of each of 5 classes: each of the 2 folds trains on one example a class, where the
    # contrastive loss has nothing to learn, so the folds cannot score a fine-tuning
    data = _data({k: TOPICS[k] for k in list(TOPICS)[:5]}, {k: 2 for k in list(TOPICS)[:5]})
    untuned = dict(_load_body(str(tiny_body_dir)).named_parameters())

    said: list[str] = []
    auto = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False), progress=said.append).selection
    assert auto.epochs == 0 and not auto.finetuned and set(auto.scores) == {"0"}
    assert "not scored" in auto.note and "not scored" in describe(auto, len(data))
    assert not any(m.startswith("cross-validation fold") for m in said)  # no fold was fine-tuned

    said.clear()
    forced = train(data, TrainConfig(model=str(tiny_body_dir), show_progress=False, finetune="always"),
                   progress=said.append)
    sel = forced.selection
    assert sel.finetuned and not sel.averaged and sel.final_body == "all examples" and set(sel.scores) == {"0"}
    assert any(m.startswith("fine-tuning on all") for m in said)
    text = describe(sel, len(data))
    assert text.startswith(f"fine-tuned {sel.epochs} epochs") and "on all the examples" in text and "not scored" in text
    tuned = dict(forced.classifier.body.model.named_parameters())
    assert any(not torch.equal(p.detach(), untuned[n].detach()) for n, p in tuned.items())  # the body moved


@pytest.mark.parametrize("multi_label", [False, True])
def test_folds_keep_the_copies_of_a_text_together(multi_label):
    from fastclf.training.selection import duplicate_groups, folds

    texts = [f"text {i}" for i in range(20)]
    texts += [texts[i] + "  " for i in range(0, 20, 2)]  # 10 copies (equal after stripping whitespace)
    assert duplicate_groups(texts[:20]) is None
    groups = duplicate_groups(texts)
    assert groups is not None and groups.max() + 1 == 20
    y = np.array([i % 2 for i in range(20)] + [0] * 10)
    if multi_label:
        y = np.stack([y, 1 - y], axis=1)
    for seed in range(5):
        splits = folds(y, 2, seed, multi_label, groups)
        assert len(splits) == 2
        for tr, te in splits:
            assert not set(groups[tr]) & set(groups[te])
            assert sorted(np.concatenate([tr, te])) == list(range(30))


def test_training_notes_repeated_and_conflicting_texts():
    from fastclf.cli.commands import duplicates_note

    assert duplicates_note(LabeledData(["a", "b", "c", "d"], ["x", "y", "x", "y"])) == ""
    note = duplicates_note(LabeledData(["a", "b", "a ", "b", "c", "d"], ["x", "y", "x", "x", "x", "y"]))
    assert note.startswith("note: 2 texts appear more than once (4 rows)") and "1 of them carries different labels" in note


def test_a_choice_no_better_than_the_common_class_is_named():
    from fastclf.cli.commands import chance_note
    from fastclf.training.selection import Selection

    data = LabeledData([f"text {i}" for i in range(12)], ["a"] * 8 + ["b"] * 4)
    weak = Selection(0, 1.0, "cross-validation", folds=2, scores={"0": 8 / 12, "16": 0.5})
    note = chance_note(weak, data)
    assert note.startswith("note: the cross-validated accuracy (0.667) is no better than always answering 'a' (0.667)")
    assert "--model" in note
    assert chance_note(Selection(0, 1.0, "cross-validation", folds=2, scores={"0": 0.75}), data) == ""
    assert chance_note(Selection(0, 1.0, "fixed by the settings"), data) == ""


def test_the_untuned_body_needs_a_clear_lead_over_fine_tuning():
    from fastclf.training.selection import UNTUNED_MARGIN_Z, Scores, Selection

    def scores(correct: dict[tuple[int, float], int], n: int = 64) -> Scores:
        s = Scores((1.0, 10.0))
        for key, right in correct.items():  # class 0 of n texts, scored right on the first ``right``
            z = np.where(np.arange(n)[:, None] < right, [1.0, 0.0], [0.0, 1.0])
            s.held_out[key] = [(z, np.zeros(n, dtype=int))]
        return s

    # 41 against 40 of 64 held out: a lead of 1.6 points, far within 1.5 standard errors (about 12 points)
    assert scores({(0, 1.0): 41, (0, 10.0): 39, (4, 1.0): 40, (8, 1.0): 40}).best() == (4, 1.0)
    assert scores({(0, 1.0): 41, (4, 1.0): 40}).best(margin=0) == (0, 1.0)  # the old rule: ahead at all
    # 52 against 36 of 64: 25 points, beyond the margin: the untuned body (with its best C)
    assert scores({(0, 1.0): 50, (0, 10.0): 52, (4, 1.0): 36, (8, 1.0): 30}).best() == (0, 10.0)
    # fine-tuning ahead: the best fine-tuning, ties to fewer epochs, then to C nearest 1
    assert scores({(0, 1.0): 40, (4, 10.0): 45, (8, 1.0): 45, (4, 1.0): 45}).best() == (4, 1.0)
    assert UNTUNED_MARGIN_Z > 0
    sel = Selection(4, 1.0, "cross-validation", folds=2, scores={"0": 41 / 64, "4": 40 / 64})
    assert "within 1.5 standard errors" in describe(sel, 64)
