"""Benchmark: RiskNet training-step throughput of a preset, on CPU or GPU.

Run ``python -m pipelines.bench_train_step --preset base --device cuda --batch 64``.
A step is forward + backward + AdamW on a batch shaped like the default city's
samples (24 hourly sensor steps of 7 channels, 8 reports, a 16-px frame, the
neighbours' context, a 400-district graph with 11 static attributes). On CUDA
it compares bf16 autocast with fp32 in one run.
It prints a table and writes JSON. It imports torch and fedcore.model, which
reaches geopandas, shapely and pyproj through ``datasets``: a GPU machine without
the geo stack needs their wheels (README).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from torch_geometric.data import Data

from fedcore.model import ModelConfig, build_model, count_parameters

DOMAINS = ["traffic", "safety", "crowd", "disaster"]


def random_batch(config: ModelConfig, size: int, districts: int, device: str) -> tuple[dict, Data]:
    """A batch and graph with the shapes of real samples (values are random)."""
    generator = torch.Generator().manual_seed(0)
    batch = {
        "district": torch.randint(0, districts, (size,), generator=generator),
        "series": torch.randn(size, 24, config.n_channels, generator=generator),
        "series_time": torch.arange(-24, 0).float().expand(size, 24).contiguous(),
        "series_mask": torch.rand(size, 24, config.n_channels, generator=generator) > 0.1,
        "image": torch.rand(size, 3, config.frame_size, config.frame_size, generator=generator),
        "image_mask": torch.rand(size, generator=generator) > 0.4,
        "text": torch.randn(size, 8, config.text_dim, generator=generator),
        "text_time": -24 * torch.rand(size, 8, generator=generator),
        "text_mask": torch.rand(size, 8, generator=generator) > 0.5,
        "clock": torch.rand(size, 4, generator=generator) * 2 - 1,
        "neighbours": torch.randn(size, config.neighbour_dim, generator=generator),
        "targets": torch.poisson(torch.full((size, len(config.domains)), 0.05)),
    }
    edges = torch.randint(0, districts, (2, districts * 6), generator=generator)
    graph = Data(
        x=torch.randn(districts, config.n_static, generator=generator),
        edge_index=torch.cat([edges, edges.flip(0)], 1),
        num_nodes=districts,
    )
    return {k: v.to(device) for k, v in batch.items()}, graph.to(device)


def time_steps(model, batch, graph, steps: int, warmup: int, bf16: bool, device: str) -> dict:
    """Mean seconds per training step after ``warmup`` steps."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = (batch["targets"] > 0).float()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            output = model(batch, graph)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                output["logits"].float(), labels
            )
        loss.backward()
        optimiser.step()

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"step_ms": round(1000 * seconds, 2), "peak_gpu_gib": round(peak, 2)}


def main(
    preset: str = "base",
    device: str = "cpu",
    batch: Annotated[list[int], typer.Option(help="Batch sizes to time.")] = [2],  # noqa: B006
    steps: int = 10,
    warmup: int = 3,
    out: Path = Path("runs/bench/train_step.json"),
) -> None:
    """Time training steps and write the table as JSON."""
    from rich.console import Console
    from rich.table import Table

    torch.manual_seed(0)
    config = ModelConfig.preset_config(preset, domains=DOMAINS, n_channels=7, n_static=11)
    model = build_model(config).to(device).train()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    rows = []
    for size in batch:
        data, graph = random_batch(config, size, districts=400, device=device)
        for bf16 in [True, False] if device == "cuda" else [False]:
            timing = time_steps(model, data, graph, steps, warmup, bf16, device)
            rows.append(
                {
                    "preset": preset,
                    "device": name,
                    "batch": size,
                    "precision": "bf16 autocast" if bf16 else "fp32",
                    **timing,
                    "samples_per_s": round(size * 1000 / timing["step_ms"], 1),
                }
            )
    table = Table(title=f"RiskNet {preset} ({count_parameters(model) / 1e6:.1f}M params) on {name}")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"parameters": count_parameters(model), "rows": rows}, indent=2))


if __name__ == "__main__":
    typer.run(main)
