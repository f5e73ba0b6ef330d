import keras
import numpy as np
import pytest

from model.sampled_logits import seen_negatives
from model.scorer import FALSE_NEGATIVE_SCORE, ContrastiveScorer, contrastive_loss
from tests.helpers import assert_close, save_load_model, serialize_round_trip

# Two queries, their positives, three shared negatives (ids 5, 7, 9); query 0's positive is item 7, so
# negative 7 is an accidental hit for row 0.
Q = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
P = np.array([[1.0, 1.0], [0.0, 2.0]], "float32")
POS_IDS = np.array([7, 3])
NEG = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], "float32")
NEG_IDS = np.array([5, 7, 9])
NEG_LOG_Q = np.log(np.array([0.5, 0.25, 0.25], "float32"))
POS_LOG_Q = np.log(np.array([0.25, 0.5], "float32"))

# Raw dot products: positives [1, 2]; negatives row 0: [1, 0, 2], row 1: [0, 1, 0].
# temperature 0.5 -> positives [2, 4]; negatives row 0 [2, 0, 4], row 1 [0, 2, 0].
# logQ subtracts log q: positives + [ln 4, ln 2]; negatives + [ln 2, ln 4, ln 4].
# Row 0's negative id 7 equals its positive id -> -655.04.
LN2, LN4 = np.log(2.0), np.log(4.0)
EXPECTED = np.array(
    [
        [2 + LN4, 2 + LN2, FALSE_NEGATIVE_SCORE, 4 + LN4],
        [4 + LN2, 0 + LN2, 2 + LN4, 0 + LN4],
    ],
    "float32",
)


def test_hand_computed_logits_with_accidental_hit_logq_and_temperature():
    scorer = ContrastiveScorer(temperature=0.5, logq_correction=True)
    logits = scorer(Q, P, POS_IDS, NEG, NEG_IDS, negative_log_q=NEG_LOG_Q, positive_log_q=POS_LOG_Q)
    assert_close(logits, EXPECTED)


def test_negative_mask_masks_per_row_and_seen_negatives_finds_each_rows_items():
    seen = np.array([[9, -1, -1], [5, 7, 3]])  # row 0 saw item 9; row 1 saw 5, 7 and its own positive 3
    mask = seen_negatives(seen, NEG_IDS)
    np.testing.assert_array_equal(mask, [[False, False, True], [True, True, False]])
    scorer = ContrastiveScorer(temperature=0.5, logq_correction=True)
    logits = scorer(Q, P, POS_IDS, NEG, NEG_IDS, NEG_LOG_Q, POS_LOG_Q, negative_mask=mask)
    expected = EXPECTED.copy()
    expected[0, 3] = expected[1, 1] = expected[1, 2] = FALSE_NEGATIVE_SCORE
    assert_close(logits, expected)
    assert not np.asarray(seen_negatives(np.full((2, 4), -1), NEG_IDS)).any()  # nothing seen, nothing masked


def test_loss_is_cross_entropy_with_positive_in_column_0():
    logits = EXPECTED
    rows = [np.log(np.exp(r.astype(np.float64)).sum()) - r[0] for r in logits]
    assert_close(contrastive_loss(logits), np.mean(rows))
    assert_close(contrastive_loss(logits, np.array([1.0, 0.0])), rows[0])


def test_no_logq_no_temperature_plain_dot_products():
    logits = ContrastiveScorer()(Q, P, POS_IDS, NEG, NEG_IDS)
    assert_close(logits, [[1, 1, FALSE_NEGATIVE_SCORE, 2], [2, 0, 1, 0]])


def test_hard_negative_mining_keeps_top_n_and_returns_ids():
    scorer = ContrastiveScorer(hard_negatives=1, return_negative_ids=True)
    logits, ids = scorer(Q, P, POS_IDS, NEG, NEG_IDS)
    assert_close(logits, [[1, 2], [2, 1]])
    np.testing.assert_array_equal(np.asarray(ids), [[9], [7]])


def test_invalid_slots_are_masked():
    logits = ContrastiveScorer()(Q, P, POS_IDS, NEG, NEG_IDS, negative_valid=np.array([True, True, False]))
    assert_close(np.asarray(logits)[:, 3], [FALSE_NEGATIVE_SCORE, FALSE_NEGATIVE_SCORE])


def test_normalize_gives_cosine():
    logits = ContrastiveScorer(normalize=True)(Q, P, POS_IDS, NEG, NEG_IDS)
    assert_close(np.asarray(logits)[0, 0], 1 / np.sqrt(2))


def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        scorer = ContrastiveScorer(temperature=0.5, logq_correction=True)
        logits = scorer(
            Q.astype("float16"),
            P.astype("float16"),
            POS_IDS,
            NEG.astype("float16"),
            NEG_IDS,
            negative_log_q=NEG_LOG_Q,
            positive_log_q=POS_LOG_Q,
        )
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert logits.dtype == "float32"
    assert_close(logits, EXPECTED, atol=1e-3)
    assert np.float16(FALSE_NEGATIVE_SCORE) == pytest.approx(FALSE_NEGATIVE_SCORE, abs=0.5)


def test_logq_without_probabilities_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler provided none"):
        ContrastiveScorer(logq_correction=True)(Q, P, POS_IDS, NEG, NEG_IDS)


@pytest.mark.parametrize("kwargs", [{"temperature": 0.0}, {"hard_negatives": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ContrastiveScorer(**kwargs)


def test_config_round_trip_keeps_every_option():
    scorer = ContrastiveScorer(
        temperature=0.07,
        logq_correction=True,
        false_negative_score=-100.0,
        hard_negatives=3,
        normalize=True,
        return_negative_ids=True,
    )
    restored = serialize_round_trip(scorer)
    for name in [
        "temperature",
        "logq_correction",
        "false_negative_score",
        "hard_negatives",
        "normalize",
        "return_negative_ids",
    ]:
        assert getattr(restored, name) == getattr(scorer, name)


def test_functional_model_and_save_load(tmp_path):
    inputs = {
        "q": keras.Input((2,), name="q"),
        "p": keras.Input((2,), name="p"),
        "pid": keras.Input((), dtype="int64", name="pid"),
    }
    negatives = keras.ops.convert_to_tensor(NEG)
    scorer = ContrastiveScorer(temperature=0.5, logq_correction=True)
    out = scorer(inputs["q"], inputs["p"], inputs["pid"], negatives, NEG_IDS, negative_log_q=NEG_LOG_Q)
    model = keras.Model(inputs, out)
    data = {"q": Q, "p": P, "pid": POS_IDS}
    expected = EXPECTED.copy()
    expected[:, 0] = [2.0, 4.0]  # the positive column is not corrected without positive_log_q
    assert_close(model(data), expected)
    assert_close(save_load_model(model, tmp_path)(data), expected)
