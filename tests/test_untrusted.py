"""Untrusted files: a planted pickle checkpoint is refused unread, and no code path can unpickle."""

import pickle
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from advsec.cli import main
from advsec.errors import DataError
from advsec.progress import Progress
from advsec.spec import TrainConfig
from advsec.train import cache_dir, load_or_train, model_key

REPO = Path(__file__).resolve().parent.parent
TRAINING = TrainConfig(epochs=1)


class Payload:
    """Unpickling this creates a file: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_planted_pickle_checkpoint_is_refused_and_never_executed(digits, tmp_path, writer):
    marker = tmp_path / "pwned"
    assert pickle.loads(pickle.dumps(Payload(marker))) is None and marker.exists()  # the payload works
    marker.unlink()
    checkpoint = cache_dir() / f"{model_key(digits, 'mlp', 'standard', {}, TRAINING, 7)}.safetensors"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if writer == "pickle":
        checkpoint.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    else:
        torch.save({"weight": Payload(marker)}, checkpoint)
    with pytest.raises(DataError, match=r"cached model .* is unreadable .*delete it to retrain"):
        load_or_train(digits, "mlp", "standard", {}, TRAINING, 7, device=torch.device("cpu"),
                      progress=Progress(quiet=True))  # fmt: skip
    result = CliRunner().invoke(main, ["train", "--defense", "standard", "--epochs", "1", "--seed", "7"])
    assert result.exit_code != 0 and "is unreadable" in result.output and "Traceback" not in result.output
    assert not marker.exists()
    checkpoint.unlink()


def test_no_code_path_can_unpickle():
    """Checkpoints are safetensors; a torch.load anywhere must say weights_only=True."""
    sources = [p for folder in ("advsec", "attacks", "defenses") for p in (REPO / folder).rglob("*.py")]
    assert len(sources) > 30
    for source in sources:
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|dill|cloudpickle|joblib)\b", text, re.M), source
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{source}: {call.group(0)}"
        assert "np.load(" not in text or "allow_pickle=True" not in text, source
