"""The simulators' shared faults: held until discarded, or for a number of uses."""

from __future__ import annotations

import pytest

from surplus.sim.serving import Faults


def test_faults_hold_until_discarded_or_used_up() -> None:
    faults = Faults({"slow", "busy", "token_expired"}, one_shot={"token_expired"})
    faults.add("slow")
    faults.add("busy", times=2)
    faults.add("token_expired")
    assert faults.active == {"slow", "busy", "token_expired"}
    assert faults.take("slow") and faults.take("slow")  # held until discarded
    assert faults.take("token_expired") and not faults.take("token_expired")  # one shot
    assert faults.take("busy") and faults.take("busy") and not faults.take("busy")
    assert "slow" in faults and "busy" not in faults
    faults.discard("slow")
    assert faults.active == frozenset()
    with pytest.raises(ValueError, match="unknown faults"):
        faults.add("no_such_fault")
    with pytest.raises(ValueError, match="one-shot"):
        Faults({"a"}, one_shot={"b"})
