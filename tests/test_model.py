import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from datasets import neighbour_width
from fedcore.model import ModelConfig, build_model, count_parameters, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def fake_batch(size=4, channels=6, text_dim=384, frame=16, districts=5):
    generator = torch.Generator().manual_seed(0)
    return {
        "district": torch.arange(size) % districts,
        "series": torch.randn(size, 24, channels, generator=generator),
        "series_time": torch.arange(-24, 0).float().expand(size, 24),
        "series_mask": torch.rand(size, 24, channels, generator=generator) > 0.2,
        "image": torch.rand(size, 3, frame, frame, generator=generator),
        "image_mask": torch.tensor([True, False] * (size // 2)),
        "text": torch.randn(size, 3, text_dim, generator=generator),
        "text_time": -torch.rand(size, 3, generator=generator) * 24,
        "text_mask": torch.tensor([[True, True, False]] * (size - 1) + [[False] * 3]),
        "neighbours": torch.rand(size, neighbour_width(text_dim, channels), generator=generator),
        "clock": torch.rand(size, 4, generator=generator) * 2 - 1,
        "targets": torch.zeros(size, 2),
        "target_mask": torch.ones(size, 2, dtype=torch.bool),
    }


def fake_graph(n_static=10, districts=5):
    edges = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    x = torch.randn(districts, n_static, generator=torch.Generator().manual_seed(1))
    return Data(x=x, edge_index=edges, num_nodes=districts)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return build_model(ModelConfig.preset_config("tiny")).eval()


def test_tiny_preset_is_small_and_outputs_per_domain(tiny):
    assert count_parameters(tiny) < 2_000_000
    out = tiny(fake_batch(), fake_graph())
    assert out["logits"].shape == (4, 2) and out["log_rate"].shape == (4, 2)
    assert torch.isfinite(out["logits"]).all()


def test_missing_modality_uses_the_missing_token(tiny):
    batch = fake_batch()
    changed = dict(batch, image=torch.rand_like(batch["image"]))
    # Sample 1 has no image: changing its pixels must not change its prediction...
    before, after = tiny(batch, fake_graph()), tiny(changed, fake_graph())
    assert torch.allclose(before["logits"][1], after["logits"][1])
    # ...while sample 0 has one, so its prediction moves.
    assert not torch.allclose(before["logits"][0], after["logits"][0])


def test_a_sample_without_any_sensor_reading_stays_finite(tiny):
    batch = fake_batch()
    batch["series_mask"][0] = False
    assert torch.isfinite(tiny(batch, fake_graph())["logits"]).all()


def test_dropping_a_modality_changes_the_output(tiny):
    drop = torch.tensor([False, True, False, False])
    full, without = tiny(fake_batch(), fake_graph()), tiny(fake_batch(), fake_graph(), drop=drop)
    assert not torch.allclose(full["logits"][0], without["logits"][0])


def test_save_load_gives_identical_predictions(tiny, tmp_path):
    save_model(tiny, tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_model(tmp_path / "model")
    assert loaded.config == tiny.config
    batch, graph = fake_batch(), fake_graph()
    assert torch.equal(loaded(batch, graph)["logits"], tiny(batch, graph)["logits"])


def test_a_sample_without_reports_uses_the_missing_text_token(tiny):
    batch = fake_batch()
    changed = dict(batch, text=torch.randn_like(batch["text"]))
    before, after = tiny(batch, fake_graph()), tiny(changed, fake_graph())
    assert torch.allclose(before["logits"][3], after["logits"][3])  # sample 3 has no report
    assert not torch.allclose(before["logits"][0], after["logits"][0])


def test_base_preset_has_150m_parameters_on_the_meta_device():
    config = ModelConfig.preset_config("base", domains=["traffic", "safety", "crowd", "disaster"])
    with torch.device("meta"):
        model = build_model(config)
    assert abs(count_parameters(model) - 150e6) <= 0.03 * 150e6
    assert model.image.__class__.__name__ == "VitImageEncoder"


@pytest.mark.slow
def test_base_preset_trains_one_step_on_cpu():
    config = ModelConfig.preset_config("base", domains=["traffic", "safety"])
    model = build_model(config).train()
    batch = fake_batch(size=2, channels=config.n_channels, text_dim=config.text_dim)
    output = model(batch, fake_graph(n_static=config.n_static))
    loss = output["logits"].sum() + output["log_rate"].sum()
    loss.backward()
    assert all(p.grad is not None for p in model.image.parameters() if p.requires_grad)
    assert torch.isfinite(loss)


def test_unknown_preset_is_refused():
    with pytest.raises(KeyError, match="unknown preset"):
        ModelConfig.preset_config("huge")


def test_report_embedder_matches_sentence_transformers_pooling():
    from fedcore.model.text_embedding import report_embedder

    vectors = report_embedder()(["Festival tonight, large crowds expected.", "Lost cat."])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar = report_embedder()(["A festival tonight with big crowds expected."])[0]
    assert vectors[0] @ similar > vectors[1] @ similar


def test_loading_the_report_embedder_draws_no_progress_bar_and_leaves_them_on(capfd):
    from transformers.utils import logging as transformers_logging

    from fedcore.model.text_embedding import ReportEmbedder

    assert transformers_logging.is_progress_bar_enabled()
    ReportEmbedder()
    assert "Loading weights" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()  # others' bars are not ours to hide


def _counting_model_calls(embedder) -> list[int]:
    calls, model = [], embedder.model

    def counted(**encoded):
        calls.append(len(encoded["input_ids"]))
        return model(**encoded)

    embedder.model = counted
    return calls


def test_report_embeddings_are_kept_on_disk_for_the_next_process(tmp_path):
    from fedcore.model.text_embedding import ReportEmbedder, model_tag

    texts = ["Flooded underpass on route 6.", "Festival tonight.", "Flooded underpass on route 6."]
    first = ReportEmbedder(cache_dir=tmp_path)
    vectors = first(texts)
    [store] = tmp_path.iterdir()
    assert model_tag() in store.name and "minilm" in store.name
    again = ReportEmbedder(cache_dir=tmp_path)  # as a fresh ClientApp process would
    calls = _counting_model_calls(again)
    assert np.array_equal(again(texts), vectors) and calls == []
    assert np.allclose(again(["A new report."]), ReportEmbedder()(["A new report."]), atol=1e-6)
    assert calls == [1]
    third = ReportEmbedder(cache_dir=tmp_path)
    calls = _counting_model_calls(third)
    third(["A new report.", "Festival tonight."])
    assert calls == []


def test_an_unusable_embedding_cache_is_warned_about_and_left_as_it_is(tmp_path):
    from fedcore.model.text_embedding import ReportEmbedder, model_tag

    store = tmp_path / f"report-embeddings-{model_tag()}.sqlite"
    store.write_bytes(b"this is not a database" * 100)
    embedder = ReportEmbedder(cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="not usable"):
        vectors = embedder(["Lost cat.", "Road closed."])
    assert np.allclose(vectors, ReportEmbedder()(["Lost cat.", "Road closed."]), atol=1e-6)
    assert store.read_bytes() == b"this is not a database" * 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; embedding goes on without the store
        assert embedder(["Another report."]).shape == (1, 384)
    (tmp_path / "a-file").write_text("not a folder")
    beneath_a_file = ReportEmbedder(cache_dir=tmp_path / "a-file" / "cache")
    with pytest.warns(RuntimeWarning, match="not usable"):
        assert beneath_a_file(["Lost cat."]).shape == (1, 384)


def test_each_encoder_can_be_frozen_or_adapted_on_its_own():
    from fedcore.model.adapters import add_lora, freeze_encoder, trainable_parameters

    torch.manual_seed(0)
    model = build_model(ModelConfig.preset_config("tiny"))
    total = trainable_parameters(model)
    freeze_encoder(model, "image")
    assert all(not p.requires_grad for p in model.image.parameters())
    assert any(p.requires_grad for p in model.sensor.parameters())
    wrapped = add_lora(model, "sensor", rank=2)
    assert wrapped and trainable_parameters(model) < total
    lora = [n for n, p in model.sensor.named_parameters() if p.requires_grad]
    assert lora and all("lora_" in name for name in lora)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    output = model.train()(fake_batch(), fake_graph())
    (output["logits"].sum() + output["log_rate"].sum()).backward()
    optimiser.step()
    after = dict(model.named_parameters())
    assert torch.equal(before["image.net.0.weight"], after["image.net.0.weight"])
    assert any(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
    with pytest.raises(KeyError, match="unknown encoder"):
        freeze_encoder(model, "radar")


def test_single_modality_model_ignores_the_others(tiny):
    config = ModelConfig.preset_config("tiny", modalities=["text"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    batch = fake_batch()
    changed = dict(
        batch, image=torch.rand_like(batch["image"]), series=torch.randn_like(batch["series"])
    )
    assert torch.equal(model(batch, fake_graph())["logits"], model(changed, fake_graph())["logits"])
    with pytest.raises(ValueError, match="modalities"):
        build_model(ModelConfig.preset_config("tiny", modalities=["smell"]))


def test_encoding_once_and_fusing_per_hidden_modality_matches_forward(tiny):
    batch, graph = fake_batch(), fake_graph()
    tokens, present = tiny.tokens(batch, graph, tiny.encode_graph(graph))
    assert torch.allclose(
        tiny.fuse(tokens, present, batch["clock"])["logits"], tiny(batch, graph)["logits"]
    )
    drop = torch.tensor([False, False, True, False])
    assert torch.allclose(
        tiny.fuse(tokens, present, batch["clock"], drop)["logits"],
        tiny(batch, graph, drop=drop)["logits"],
    )


@pytest.mark.parametrize("encoder", ["convnet", "vit"])
def test_image_encoders_see_frames_standardised(encoder):
    """Both image encoders feed their first layer ImageNet-standardised frames."""
    from dataclasses import replace

    from transformers.image_utils import IMAGENET_DEFAULT_MEAN

    config = replace(
        ModelConfig.preset_config("tiny"), image_encoder=encoder, image_size=16, image_layers=1
    )
    image = build_model(config).image
    first = image.net[0] if encoder == "convnet" else image.vit.embeddings.patch_embeddings
    seen = []
    first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    grey = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1).expand(2, 3, 16, 16)
    image(grey.contiguous())
    assert torch.allclose(seen[0], torch.zeros_like(seen[0]), atol=1e-6)


def test_building_a_model_leaves_no_generated_source_in_the_temp_folder(tmp_path):
    """PyG writes GCNConv's generated propagate to the temp folder; we delete it."""
    script = (
        "import torch\n"
        "from fedcore.model import ModelConfig, build_model\n"
        "from tests.test_model import fake_batch, fake_graph\n"
        "model = build_model(ModelConfig.preset_config('tiny')).eval()\n"
        "out = model(fake_batch(), fake_graph())\n"
        "assert torch.isfinite(out['logits']).all()\n"
    )
    environment = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, cwd=ROOT)
    assert sorted(path.name for path in tmp_path.iterdir()) == []
