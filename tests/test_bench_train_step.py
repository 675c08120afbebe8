"""The training-step benchmark runs on the model as it is (its batch has every input)."""

import json

from fedcore.model import ModelConfig, build_model
from pipelines.bench_train_step import DOMAINS, main, random_batch


def test_random_batch_has_every_input_the_model_reads():
    config = ModelConfig.preset_config("tiny", domains=DOMAINS, n_channels=7, n_static=11)
    batch, graph = random_batch(config, size=3, districts=10, device="cpu")
    output = build_model(config)(batch, graph)
    assert output["logits"].shape == (3, len(DOMAINS))


def test_benchmark_writes_one_row_per_batch_size(tmp_path):
    out = tmp_path / "train_step.json"
    main(preset="tiny", device="cpu", batch=[2, 4], steps=1, warmup=0, out=out)
    result = json.loads(out.read_text())
    assert [row["batch"] for row in result["rows"]] == [2, 4]
    assert all(row["step_ms"] > 0 for row in result["rows"])
    assert result["parameters"] > 0
