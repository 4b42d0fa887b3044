"""The trusted side's own limits on what a submission sends back: each reply is rebuilt from raw data (plain
tensors, no shadowed methods) under a budget of values and of materialised tensor bytes."""

import io
import time

import pytest
import torch

from gancourse.grading import codec, limits


def roundtrip(value):
    """`value` as the trusted side reads it: torch.save in the submission, torch.load(weights_only) here."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def test_a_reply_is_rebuilt_into_plain_tensors():
    loss = torch.zeros(1)
    loss.reshape = torch.Tensor  # reshape(()) would give an empty tensor, which allclose broadcasts to True
    loaded = roundtrip({"value": [loss, torch.nn.Parameter(torch.ones(2))]})
    assert "reshape" in vars(loaded["value"][0])  # what weights_only lets through
    fresh = codec.rebuild(loaded)
    for t, expected in zip(fresh["value"], (torch.zeros(1), torch.ones(2))):
        assert type(t) is torch.Tensor and vars(t) == {} and torch.equal(t, expected)
    assert fresh["value"][0].reshape(()).shape == ()


def test_shared_references_count_each_time():
    items = list(range(10_000))
    reply = roundtrip({"value": [items] * 10_000})  # 10^8 values once expanded
    start = time.perf_counter()
    with pytest.raises(codec.BadReply, match=f"more than {limits.NODES_LIMIT:,} values"):
        codec.rebuild(reply)
    assert time.perf_counter() - start < 2


def test_a_stride_zero_view_counts_in_full():
    view = torch.zeros(1).expand(2**28)  # 4 bytes of storage, 1 GiB materialised
    reply = roundtrip({"state": {"exp_avg": view}})
    start = time.perf_counter()
    with pytest.raises(codec.BadReply, match="MB once materialised"):
        codec.rebuild(reply)
    assert time.perf_counter() - start < 2
    small = codec.rebuild(roundtrip(torch.arange(3.0).expand(2, 3)))
    assert small.stride() == (3, 1) and torch.equal(small, torch.arange(3.0).expand(2, 3))


def test_only_plain_values():
    class Box:
        pass

    for bad in ({"x": Box()}, {(1, 2): 3}, torch.zeros(2).to_sparse()):
        with pytest.raises(codec.BadReply):
            codec.rebuild(bad)
