"""The moving average of the weights: its arithmetic, its swap, its checks."""

from __future__ import annotations

import pytest
import torch

from vcfbert.weight_average import WeightAverage


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_the_average_follows_the_decay_of_each_update():
    torch.manual_seed(0)
    net = _Net()
    start = {k: v.clone() for k, v in net.state_dict().items()}
    avg = WeightAverage.of_model(net, decay=0.5)
    expected = {k: v.clone() for k, v in start.items()}
    for n in range(1, 6):
        with torch.no_grad():
            net.lin.weight.add_(torch.randn_like(net.lin.weight))
            net.lin.bias.add_(1.0)
            net.count += 1
        d = min(0.5, (1 + n) / (10 + n))
        assert avg.step_decay() == pytest.approx(d)
        avg.update(net)
        for k in ("lin.weight", "lin.bias"):
            expected[k] = d * expected[k] + (1 - d) * net.state_dict()[k]
            torch.testing.assert_close(avg.average[k], expected[k])
    assert avg.updates == 5
    assert int(avg.average["count"]) == 5  # integer buffers are copied, not averaged
    # the first updates decay less than asked: the initial weights fade fast
    assert WeightAverage.of_model(net, decay=0.999).step_decay() == pytest.approx(2 / 11)


def test_swapped_in_holds_the_average_and_restores_the_weights():
    net = _Net()
    avg = WeightAverage.of_model(net, decay=0.9)
    with torch.no_grad():
        net.lin.bias.fill_(7.0)
    own = net.lin.bias.clone()
    with avg.swapped_in(net) as raw:
        torch.testing.assert_close(net.lin.bias, avg.average["lin.bias"])
        torch.testing.assert_close(raw["lin.bias"], own)
    torch.testing.assert_close(net.lin.bias, own)
    state = avg.state()
    again = WeightAverage.from_state(0.9, state)
    assert again.updates == avg.updates
    torch.testing.assert_close(again.average["lin.weight"], avg.average["lin.weight"])


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="weight_average_decay"):
        WeightAverage.of_model(_Net(), decay=decay)
