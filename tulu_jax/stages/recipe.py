"""The whole Tülu 3 recipe in one command: data → SFT → DPO (dpo_norm) → RLVR (PPO) → export → reload.

Each stage reads the previous stage's Hugging Face export, exactly as on a TPU pod. After every stage the
held-out prompts are answered greedily and scored with the real verifiers. A stage that finished is skipped
on the next run; a stage that was interrupted resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax

from data_pipeline.config import SourceConfig
from data_pipeline.demo import DemoFiles, build_demo_data
from tulu_jax.config import to_dict
from tulu_jax.errors import ConfigError
from tulu_jax.models.params import param_shapes
from tulu_jax.stages.hf_export import EXPORT_DIR
from tulu_jax.stages.model_source import ModelConfig, load_model_params, resolve_model_config
from tulu_jax.stages.dpo import DPOConfig, run_dpo
from tulu_jax.stages.recipe_report import accuracy_table, plot_curves, read_metrics
from tulu_jax.stages.rlvr import RLVRConfig
from tulu_jax.stages.sft import SFTConfig, run_sft

log = logging.getLogger(__name__)

DATA_FILES = ("sft.jsonl", "preference.jsonl", "rlvr.jsonl", "eval.jsonl")


@dataclass(frozen=True)
class DemoDataConfig:
    """Sizes of the bundled task family (see ``data_pipeline.demo``)."""

    seed: int = 0
    sft_size: int = 2000
    preference_size: int = 1000
    rlvr_size: int = 1000
    eval_size: int = 200
    arithmetic_share: float = 0.75
    vocab_size: int = 512


@dataclass(frozen=True)
class RecipeEvalConfig:
    max_new_tokens: int = 40
    batch_size: int = 64
    max_prompts: int = 0  # 0: every held-out prompt


@dataclass(frozen=True)
class RecipeConfig:
    output_dir: str = "runs/demo"
    seed: int = 0
    demo_data: DemoDataConfig = field(default_factory=DemoDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the base model (a preset: random init)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rlvr: RLVRConfig = field(default_factory=RLVRConfig)
    evaluation: RecipeEvalConfig = field(default_factory=RecipeEvalConfig)
    quick_overrides: tuple[str, ...] = ()  # key=value overrides that `--quick` applies


def _replace(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)


def stage_configs(config: RecipeConfig, files: DemoFiles) -> dict[str, Any]:
    """The three stage configs, wired to the demo data and to each other's exports."""
    run = Path(config.output_dir)
    tokenizer = str(files.tokenizer)

    def data(section, path):
        return _replace(section, sources=(SourceConfig(path=str(path)),), tokenizer=tokenizer)

    sft = _replace(config.sft, output_dir=str(run / "sft"), model=config.model, data=data(config.sft.data, files.sft))
    dpo = _replace(
        config.dpo, output_dir=str(run / "dpo"), model=ModelConfig(source=str(run / "sft")),
        data=data(config.dpo.data, files.preference),
    )
    rlvr = _replace(
        config.rlvr, output_dir=str(run / "rlvr"),
        model=_replace(config.rlvr.model, source=str(run / "dpo")),
        data=data(config.rlvr.data, files.rlvr),
    )
    return {"sft": sft, "dpo": dpo, "rlvr": rlvr}


class RecipeRun:
    """One run directory: which stages are done, their evaluations and wall times (kept in ``recipe.json``)."""

    def __init__(self, config: RecipeConfig, echo: Callable[[str], None] = print):
        self.config, self.echo = config, echo
        self.directory = Path(config.output_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.state_path = self.directory / "recipe.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {"done": {}, "evals": {}}

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2) + "\n")

    def data(self) -> DemoFiles:
        """The demo data, made once per run directory (a resumed run reads the very same files)."""
        demo = self.config.demo_data
        made_with = self.state.get("data")
        if made_with is not None and made_with != to_dict(demo):
            raise ConfigError(
                f"{self.directory} holds demo data made with {made_with}, not {to_dict(demo)}; "
                "choose another output_dir for different data"
            )
        directory = self.directory / "data"
        if made_with is not None:
            return DemoFiles(*(directory / name for name in DATA_FILES), tokenizer=directory / "tokenizer")
        files = build_demo_data(
            directory, demo.seed, sft_size=demo.sft_size, preference_size=demo.preference_size,
            rlvr_size=demo.rlvr_size, eval_size=demo.eval_size, arithmetic_share=demo.arithmetic_share,
            vocab_size=demo.vocab_size,
        )
        self.state["data"] = to_dict(demo)
        self.save()
        return files

    def stage(self, name: str, train: Callable[[], Any]) -> None:
        if name in self.state["done"]:
            self.echo(f"== {name}: done earlier ({self.state['done'][name]:.0f} s), skipped")
            return
        self.echo(f"== {name}")
        started = time.perf_counter()
        train()
        self.state["done"][name] = time.perf_counter() - started
        self.save()

    def evaluate(self, name: str, params, model_config, tokenizer, records) -> dict:
        if name in self.state["evals"]:
            return self.state["evals"][name]
        from tulu_jax.generation.evaluate import evaluate

        settings = self.config.evaluation
        summary = evaluate(
            params, model_config, tokenizer, records, max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size, seed=self.config.seed,
        )
        (self.directory / f"eval_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in summary.pop("records")))
        self.state["evals"][name] = summary
        self.save()
        self.echo(f"   held-out accuracy after {name}: {summary['all']['pass@1']:.3f}")
        return summary


def run_recipe(config: RecipeConfig, echo: Callable[[str], None] = print) -> dict:
    """Run (or finish) every stage; returns the evaluations, wall times and paths of what was written."""
    from data_pipeline.tokenizer import load_tokenizer
    from tulu_jax.generation.loading import load_model_for_inference
    from tulu_jax.stages.rlvr import run_rlvr

    run = RecipeRun(config, echo)
    files = run.data()
    records = [json.loads(line) for line in files.eval.read_text().splitlines()]
    if config.evaluation.max_prompts:
        records = records[: config.evaluation.max_prompts]
    stages = stage_configs(config, files)
    tokenizer = load_tokenizer(files.tokenizer)

    base_config = resolve_model_config(config.model)
    one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # the demo evaluates on one device
    base_params = load_model_params(config.model, base_config, config.sft.seed,
                                    jax.tree.map(lambda _: one_device, param_shapes(base_config)))
    run.evaluate("base", base_params, base_config, tokenizer, records)

    run.stage("sft", lambda: run_sft(stages["sft"]))
    run.evaluate("sft", *_loaded(load_model_for_inference(Path(stages["sft"].output_dir) / EXPORT_DIR)), records)
    run.stage("dpo", lambda: run_dpo(stages["dpo"]))
    run.evaluate("dpo", *_loaded(load_model_for_inference(Path(stages["dpo"].output_dir) / EXPORT_DIR)), records)
    run.stage("rlvr", lambda: run_rlvr(stages["rlvr"]))
    final_dir = Path(stages["rlvr"].output_dir) / EXPORT_DIR
    final = load_model_for_inference(final_dir)
    run.evaluate("rlvr", *_loaded(final), records)

    evals = run.state["evals"]
    echo("\n" + accuracy_table(evals, run.state["done"]))
    rlvr_metrics = read_metrics(Path(stages["rlvr"].output_dir) / "metrics.jsonl")
    curves = [
        ("SFT loss", read_metrics(Path(stages["sft"].output_dir) / "metrics.jsonl"), "loss"),
        ("DPO reward accuracy", read_metrics(Path(stages["dpo"].output_dir) / "metrics.jsonl"), "rewards/accuracy"),
        ("RLVR mean verifiable reward", rlvr_metrics, "reward"),
        ("RLVR accuracy on its dev prompts", rlvr_metrics, "eval/accuracy"),
    ]
    plot = plot_curves(run.directory / "curves.png", curves)
    reload = _check_reload(run, final_dir, config.evaluation.max_new_tokens)
    echo(f"curves: {plot}")
    echo(f"exported model: {final_dir}")
    return {"evals": evals, "timings": run.state["done"], "export_dir": final_dir, "plot": plot, "reload": reload}


def _check_reload(run: RecipeRun, export_dir: Path, max_new_tokens: int) -> dict:
    """Answer the first held-out prompt with transformers alone and compare with our greedy answer."""
    from tulu_jax.stages.recipe_reload import transformers_greedy_answer

    ours = json.loads((run.directory / "eval_rlvr.jsonl").read_text().splitlines()[0])
    theirs = transformers_greedy_answer(export_dir, ours["messages"], max_new_tokens)
    same = theirs == ours["generations"][0].strip()
    run.echo(f"\nreloaded in transformers: {export_dir}")
    run.echo(f"  prompt:       {ours['messages'][-1]['content']}")
    run.echo(f"  transformers: {theirs}")
    run.echo(f"  tulu-jax:     {ours['generations'][0].strip()}")
    run.echo(f"  identical: {'yes' if same else 'NO'}")
    return {"prompt": ours["messages"], "transformers": theirs, "ours": ours["generations"][0].strip(), "identical": same}


def _loaded(model) -> tuple:
    return model.params, model.config, model.tokenizer

