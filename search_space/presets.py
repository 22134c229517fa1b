"""Named model presets: the Samba paper's ablation zoo and CPU-sized ``tiny-*`` versions of it.

Follows conventions.md §2.9 (one table, a ``# source:`` provenance comment per entry, lookup with
``difflib`` suggestions) and samba-facts.md: layer orders from §1.2, hyperparameters from §2.1 and the
official microsoft/Samba configs as §2.2 reads them (``lit_gpt/config.py`` at HEAD), including which
models tie their embeddings. ``paper_params`` is §2.2's exact count of the official config, which
matches the paper's size label everywhere except Mamba-SWA-MLP 400M (395.0M) and 1.3B (1239.4M).

Covered: every architecture of Table 3 at both scales (Mega-S6 excepted: it has no mixer here), the
full-attention Mamba-MLP hybrids of Table 5 and the GQA/MQA variants of Table 6. Names are
``<architecture>-<size>``; ``tiny-<architecture>`` keeps the layer order of the 430M-scale model (the
same repetition counts, so the full-attention positions of Table 5 stay where they are; Mamba's depth is
matched to parameters as in the paper) at d_model 64, attention heads of 16 (8 for the Table 6 variants),
window 64, vocabulary from the tokenizer, and the tie/init choice of its model, so every architecture
trains on a CPU (under 1M parameters with the 259-token bytes tokenizer).

A ``model:`` section selects a preset with ``preset: NAME``; ``apply_preset`` merges the keys beside it
on top (``mixers`` per symbol and field).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from blocks import registry
from blocks.config import ModelConfig
from blocks.mixers.base import ConfigError

__all__ = [
    "Preset",
    "PRESETS",
    "TINY_VOCAB_SIZE",
    "get_preset",
    "preset_names",
    "apply_preset",
    "presets_table",
    "format_presets_table",
]

TINY_VOCAB_SIZE = 259
"""Vocabulary used for presets whose ``vocab_size`` is null when none is given: the bytes tokenizer's."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named model configuration.

    Attributes:
        name: ``<architecture>-<size>`` or ``tiny-<architecture>``.
        model: the ``model:`` section it stands for.
        source: provenance: paper table and official config name.
        paper_params: samba-facts §2.2's exact count of the official config; None for ``tiny-*``.
        architecture: the paper's model family in hybridlab spelling (``samba``, ``llama2-swa``, ...).
        scale: ``430m`` or ``1.3b`` (the paper's two scales) or ``tiny``.
        paper_label: the size the paper prints (``"421M"``, ``"400M"``, ``"1.3B"``).
    """

    name: str
    model: ModelConfig
    source: str
    paper_params: float | None
    architecture: str
    scale: str
    paper_label: str | None = None


_VOCAB = 32000  # Llama-2 SentencePiece tokenizer (samba-facts §2.1, §2.3)
_MAMBA = {"expand": 2, "d_state": 16, "d_conv": 4, "dt_rank": "auto"}  # §2.1: d_e = 2d, d_r = ceil(d/16)


def _swa(
    heads: int, window: int | None = 2048, kv_heads: int | None = None, rope: bool = True
) -> dict[str, Any]:
    return {"heads": heads, "kv_heads": kv_heads, "window": window, "rope": rope, "rope_base": 10000.0}


def _gla(heads: int) -> dict[str, Any]:
    return {"heads": heads, "key_expand": 0.5, "value_expand": 1.0, "gate_rank": 16}


def _retnet(heads: int) -> dict[str, Any]:
    return {"heads": heads, "key_expand": 1.0, "value_expand": 2.0}


def _model(
    pattern: str, d_model: int, mixers: dict[str, dict[str, Any]], tie: bool, vocab: int | None
) -> ModelConfig:
    """``init`` follows ``tie``: tied models use the Mamba init, untied ones TinyLlama's (samba-facts §6.7)."""
    return ModelConfig(
        pattern=pattern,
        d_model=d_model,
        vocab_size=vocab,
        tie_embeddings=tie,
        init="mamba" if tie else "normal",
        mixers=copy.deepcopy(mixers),
    )


def _paper(
    name: str,
    pattern: str,
    d_model: int,
    mixers: dict[str, dict[str, Any]],
    *,
    table: str,
    row: str,
    config: str,
    params: float,
    label: str,
    tie: bool = True,
) -> Preset:
    """A paper row; ``params`` in millions (samba-facts §2.2), ``label`` the size the paper prints."""
    architecture, size = name.rsplit("-", 1)
    return Preset(
        name=name,
        model=_model(pattern, d_model, mixers, tie, _VOCAB),
        source=f"Samba paper Table {table} ({row}); microsoft/Samba config {config}",
        paper_params=params * 1e6,
        architecture=architecture,
        scale="1.3b" if size.endswith("b") else "430m",
        paper_label=label,
    )


def _tiny(
    architecture: str,
    pattern: str,
    mixers: dict[str, dict[str, Any]],
    *,
    base: str,
    tie: bool = True,
    note: str = "",
) -> Preset:
    """``base``'s layer order at d_model 64; the vocabulary comes from the tokenizer."""
    return Preset(
        name=f"tiny-{architecture}",
        model=_model(pattern, 64, mixers, tie, None),
        source=f"hybridlab: {base} scaled to d_model 64" + (f"; {note}" if note else ""),
        paper_params=None,
        architecture=architecture,
        scale="tiny",
    )


# 430M scale: d=1536, 12 heads of 128, d_p=4096; 1.3B: d=2304, 18 heads of 128, d_p=6144 (samba-facts §2.1).
_A430, _F430 = _swa(12), {"hidden": 4096}
_A13, _F13 = _swa(18), {"hidden": 6144}
_MAF430 = {"M": _MAMBA, "A": _A430, "F": _F430}
_MAF13 = {"M": _MAMBA, "A": _A13, "F": _F13}
_F3D = {"hidden": 4608}  # Table 6 raises d_p to 3d to keep the parameter count
# tiny: 4 heads of 16, window 64, d_p null (8/3·d rounded up to 64: 192 at d=64, and it follows a d_model
# override); Table 6 at tiny scale uses 8 query heads of 8, so 12/2, 6/1, 12/1, 12/4 become 8/2, 4/1 (head
# dim 16), 8/1, 8/4, with d_p = 3d = 192 at d=64 as the default gives.
_AT, _FT = _swa(4, window=64), {"hidden": None}
_MAFT = {"M": _MAMBA, "A": _AT, "F": _FT}
_T3, _T5, _T6 = "3", "5 (v1 Table 6)", "6 (v1 Table 7)"

_TABLE: tuple[Preset, ...] = (
    # ---- Table 3, 430M scale --------------------------------------------------------------------------
    # source: Samba paper Table 3, Samba 421M; microsoft/Samba config Samba_421M
    _paper("samba-421m", "(M-F-A-F)*6", 1536, _MAF430,
           table=_T3, row="Samba 421M", config="Samba_421M", params=421.8, label="421M"),
    # source: Samba paper Table 3, Samba-NoPE 421M; microsoft/Samba config Samba_421M_nope
    _paper("samba-nope-421m", "(M-F-A-F)*6", 1536, {**_MAF430, "A": _swa(12, rope=False)},
           table=_T3, row="Samba-NoPE 421M", config="Samba_421M_nope", params=421.8, label="421M"),
    # source: Samba paper Table 3, Llama-2 438M; microsoft/Samba config LLaMA_438M (untied, TinyLlama init)
    _paper("llama2-438m", "(A-F)*12", 1536, {"A": _swa(12, window=None), "F": _F430}, tie=False,
           table=_T3, row="Llama-2 438M", config="LLaMA_438M", params=438.1, label="438M"),
    # source: Samba paper Table 3, Llama-2-SWA 438M; microsoft/Samba config LLaMA_438M_SWA (untied)
    _paper("llama2-swa-438m", "(A-F)*12", 1536, {"A": _A430, "F": _F430}, tie=False,
           table=_T3, row="Llama-2-SWA 438M", config="LLaMA_438M_SWA", params=438.1, label="438M"),
    # source: Samba paper Table 3, Mamba 432M; microsoft/Samba config Mamba_430M (d=1024, no MLP)
    _paper("mamba-432m", "(M)*60", 1024, {"M": _MAMBA},
           table=_T3, row="Mamba 432M", config="Mamba_430M", params=432.8, label="432M"),
    # source: Samba paper Table 3, Sliding GLA 438M; microsoft/Samba config LLaMA_438M_SWA_gla (untied);
    #   GLA heads d/384 = 4, key 768, value 1536 (paper App. A)
    _paper("sliding-gla-438m", "(G-F-A-F)*6", 1536, {"G": _gla(4), "A": _A430, "F": _F430}, tie=False,
           table=_T3, row="Sliding GLA 438M", config="LLaMA_438M_SWA_gla", params=438.3, label="438M"),
    # source: Samba paper Table 3, Sliding RetNet 446M; microsoft/Samba config LLaMA_446M_SWA_ret;
    #   RetNet heads 12/2 = 6, key 1536, value 3072 (paper App. A)
    _paper("sliding-retnet-446m", "(R-F-A-F)*6", 1536, {"R": _retnet(6), "A": _A430, "F": _F430},
           table=_T3, row="Sliding RetNet 446M", config="LLaMA_446M_SWA_ret", params=445.6, label="446M"),
    # source: Samba paper Table 3, Mamba-SWA-MLP "400M"; microsoft/Samba config Mamba_SWA_MLP_400M (395.0M)
    _paper("mamba-swa-mlp-400m", "(M-A-F)*8", 1536, _MAF430,
           table=_T3, row="Mamba-SWA-MLP 400M", config="Mamba_SWA_MLP_400M", params=395.0, label="400M"),
    # source: Samba paper Table 3, MLP2-SWA-MLP 417M; microsoft/Samba config Samba_421M_abl_mamba (F' = 2d)
    _paper("mlp2-swa-mlp-417m", "(F[hidden=3072]-F-A-F)*6", 1536, {"A": _A430, "F": _F430},
           table=_T3, row="MLP2-SWA-MLP 417M", config="Samba_421M_abl_mamba", params=417.2, label="417M"),
    # ---- Table 3, 1.3B scale: every model tied, Mamba init --------------------------------------------
    # source: Samba paper Table 3, Samba 1.3B; microsoft/Samba config Samba_1.3B
    _paper("samba-1.3b", "(M-F-A-F)*9", 2304, _MAF13,
           table=_T3, row="Samba 1.3B", config="Samba_1.3B", params=1330.2, label="1.3B"),
    # source: Samba paper Table 3, Samba-NoPE 1.3B; microsoft/Samba config Samba_1.3B_nope
    _paper("samba-nope-1.3b", "(M-F-A-F)*9", 2304, {**_MAF13, "A": _swa(18, rope=False)},
           table=_T3, row="Samba-NoPE 1.3B", config="Samba_1.3B_nope", params=1330.2, label="1.3B"),
    # source: Samba paper Table 3, Llama-2 1.3B; microsoft/Samba config LLaMA_1.3B
    _paper("llama2-1.3b", "(A-F)*20", 2304, {"A": _swa(18, window=None), "F": _F13},
           table=_T3, row="Llama-2 1.3B", config="LLaMA_1.3B", params=1347.8, label="1.3B"),
    # source: Samba paper Table 3, Llama-2-SWA 1.3B; microsoft/Samba config LLaMA_1.3B_SWA
    _paper("llama2-swa-1.3b", "(A-F)*20", 2304, {"A": _A13, "F": _F13},
           table=_T3, row="Llama-2-SWA 1.3B", config="LLaMA_1.3B_SWA", params=1347.8, label="1.3B"),
    # source: Samba paper Table 3, Mamba 1.3B; microsoft/Samba config Mamba_1.3B (d=2048, no MLP)
    _paper("mamba-1.3b", "(M)*48", 2048, {"M": _MAMBA},
           table=_T3, row="Mamba 1.3B", config="Mamba_1.3B", params=1334.7, label="1.3B"),
    # source: Samba paper Table 3, Sliding GLA 1.2B; microsoft/Samba config LLaMA_1.2B_SWA_gla; GLA heads 6
    _paper("sliding-gla-1.2b", "(G-F-A-F)*9", 2304, {"G": _gla(6), "A": _A13, "F": _F13},
           table=_T3, row="Sliding GLA 1.2B", config="LLaMA_1.2B_SWA_gla", params=1220.9, label="1.2B"),
    # source: Samba paper Table 3, Sliding RetNet 1.4B; microsoft/Samba config LLaMA_1.4B_SWA_ret; RetNet heads 9
    _paper("sliding-retnet-1.4b", "(R-F-A-F)*9", 2304, {"R": _retnet(9), "A": _A13, "F": _F13},
           table=_T3, row="Sliding RetNet 1.4B", config="LLaMA_1.4B_SWA_ret", params=1411.5, label="1.4B"),
    # source: Samba paper Table 3, Mamba-SWA-MLP "1.3B"; microsoft/Samba config Mamba_SWA_MLP_1.3B (1239.4M)
    _paper("mamba-swa-mlp-1.3b", "(M-A-F)*12", 2304, _MAF13,
           table=_T3, row="Mamba-SWA-MLP 1.3B", config="Mamba_SWA_MLP_1.3B", params=1239.4, label="1.3B"),
    # source: Samba paper Table 3, MLP2-SWA-MLP 1.3B; microsoft/Samba config Samba_1.3B_abl_mamba (F' = 2d)
    _paper("mlp2-swa-mlp-1.3b", "(F[hidden=4608]-F-A-F)*9", 2304, {"A": _A13, "F": _F13},
           table=_T3, row="MLP2-SWA-MLP 1.3B", config="Samba_1.3B_abl_mamba", params=1316.0, label="1.3B"),
    # ---- Table 5: Mamba-MLP, full attention in place of Mamba at the given Blocks ----------------------
    # source: Samba paper Table 5, full attention at Block 11; microsoft/Samba config LLaMA_449M_full_mamba_11
    _paper("mamba-mlp-full11-449m", "(M-F)*11-A[window=null]-F", 1536, _MAF430,
           table=_T5, row="Block 11, 449M", config="LLaMA_449M_full_mamba_11", params=449.2, label="449M"),
    # source: Samba paper Table 5, full attention at Block 5; microsoft/Samba config LLaMA_449M_full_mamba_5
    _paper("mamba-mlp-full5-449m", "(M-F)*5-A[window=null]-F-(M-F)*6", 1536, _MAF430,
           table=_T5, row="Block 5, 449M", config="LLaMA_449M_full_mamba_5", params=449.2, label="449M"),
    # source: Samba paper Table 5, full attention at Block 0; microsoft/Samba config LLaMA_449M_full_mamba_0
    _paper("mamba-mlp-full0-449m", "A[window=null]-F-(M-F)*11", 1536, _MAF430,
           table=_T5, row="Block 0, 449M", config="LLaMA_449M_full_mamba_0", params=449.2, label="449M"),
    # source: Samba paper Table 5, full attention at Blocks 1 and 5; microsoft/Samba config LLaMA_443M_full_mamba_1,5
    _paper("mamba-mlp-full1-5-443m", "M-F-A[window=null]-F-(M-F)*3-A[window=null]-F-(M-F)*6", 1536, _MAF430,
           table=_T5, row="Blocks 1 and 5, 443M", config="LLaMA_443M_full_mamba_1,5", params=443.7, label="443M"),
    # ---- Table 6: GQA/MQA at the 430M scale ------------------------------------------------------------
    # source: Samba paper Table 6, Llama-2-SWA 12/2 heads; microsoft/Samba config LLaMA_438M_SWA_gqa2 (untied)
    _paper("llama2-swa-gqa2-419m", "(A-F)*12", 1536, {"A": _swa(12, kv_heads=2), "F": _F3D}, tie=False,
           table=_T6, row="Llama-2-SWA 12/2, 419M", config="LLaMA_438M_SWA_gqa2", params=419.2, label="419M"),
    # source: Samba paper Table 6, Llama-2-SWA 6/1 heads (head dim 256); microsoft/Samba config LLaMA_438M_SWA_mqa6
    _paper("llama2-swa-mqa6-419m", "(A-F)*12", 1536, {"A": _swa(6, kv_heads=1), "F": _F3D}, tie=False,
           table=_T6, row="Llama-2-SWA 6/1, 419M", config="LLaMA_438M_SWA_mqa6", params=419.2, label="419M"),
    # source: Samba paper Table 6, Llama-2-SWA 12/1 heads; microsoft/Samba config LLaMA_438M_SWA_mqa
    _paper("llama2-swa-mqa-414m", "(A-F)*12", 1536, {"A": _swa(12, kv_heads=1), "F": _F3D}, tie=False,
           table=_T6, row="Llama-2-SWA 12/1, 414M", config="LLaMA_438M_SWA_mqa", params=414.5, label="414M"),
    # source: Samba paper Table 6, Llama-2-SWA 12/4 heads; microsoft/Samba config LLaMA_438M_SWA_gqa4
    _paper("llama2-swa-gqa4-428m", "(A-F)*12", 1536, {"A": _swa(12, kv_heads=4), "F": _F3D}, tie=False,
           table=_T6, row="Llama-2-SWA 12/4, 428M", config="LLaMA_438M_SWA_gqa4", params=428.6, label="428M"),
    # source: Samba paper Table 6, Samba 12/2 heads; microsoft/Samba config Samba_421M_gqa2
    _paper("samba-gqa2-426m", "(M-F-A-F)*6", 1536, {"M": _MAMBA, "A": _swa(12, kv_heads=2), "F": _F3D},
           table=_T6, row="Samba 12/2, 426M", config="Samba_421M_gqa2", params=426.5, label="426M"),
    # source: Samba paper Table 6, Samba 6/1 heads (head dim 256); microsoft/Samba config Samba_421M_mqa6
    _paper("samba-mqa6-426m", "(M-F-A-F)*6", 1536, {"M": _MAMBA, "A": _swa(6, kv_heads=1), "F": _F3D},
           table=_T6, row="Samba 6/1, 426M", config="Samba_421M_mqa6", params=426.5, label="426M"),
    # source: Samba paper Table 6, Samba 12/1 heads; microsoft/Samba config Samba_421M_mqa
    _paper("samba-mqa-424m", "(M-F-A-F)*6", 1536, {"M": _MAMBA, "A": _swa(12, kv_heads=1), "F": _F3D},
           table=_T6, row="Samba 12/1, 424M", config="Samba_421M_mqa", params=424.2, label="424M"),
    # source: Samba paper Table 6, Samba 12/4 heads; microsoft/Samba config Samba_421M_gqa4
    _paper("samba-gqa4-431m", "(M-F-A-F)*6", 1536, {"M": _MAMBA, "A": _swa(12, kv_heads=4), "F": _F3D},
           table=_T6, row="Samba 12/4, 431M", config="Samba_421M_gqa4", params=431.2, label="431M"),
    # ---- tiny-*: the 430M-scale layer order at d_model 64, for CPU runs ----------------------------------
    # source: hybridlab, samba-421m scaled down
    _tiny("samba", "(M-F-A-F)*6", _MAFT, base="samba-421m"),
    # source: hybridlab, samba-nope-421m scaled down
    _tiny("samba-nope", "(M-F-A-F)*6", {**_MAFT, "A": _swa(4, window=64, rope=False)}, base="samba-nope-421m"),
    # source: hybridlab, llama2-438m scaled down (untied, TinyLlama init)
    _tiny("llama2", "(A-F)*12", {"A": _swa(4, window=None), "F": _FT}, base="llama2-438m", tie=False),
    # source: hybridlab, llama2-swa-438m scaled down (untied, TinyLlama init)
    _tiny("llama2-swa", "(A-F)*12", {"A": _AT, "F": _FT}, base="llama2-swa-438m", tie=False),
    # source: hybridlab, mamba-432m scaled down; 23 layers match tiny-samba's parameters (+1.8%) as 60 layers
    #   at d=1024 match samba-421m's (+2.6%)
    _tiny("mamba", "(M)*23", {"M": _MAMBA}, base="mamba-432m", note="23 layers to match tiny-samba's parameters"),
    # source: hybridlab, sliding-gla-438m scaled down (untied); GLA heads 1/3 of the attention heads -> 1
    _tiny("sliding-gla", "(G-F-A-F)*6", {"G": _gla(1), "A": _AT, "F": _FT}, base="sliding-gla-438m", tie=False),
    # source: hybridlab, sliding-retnet-446m scaled down; RetNet heads = attention heads / 2
    _tiny("sliding-retnet", "(R-F-A-F)*6", {"R": _retnet(2), "A": _AT, "F": _FT}, base="sliding-retnet-446m"),
    # source: hybridlab, mamba-swa-mlp-400m scaled down
    _tiny("mamba-swa-mlp", "(M-A-F)*8", _MAFT, base="mamba-swa-mlp-400m"),
    # source: hybridlab, mlp2-swa-mlp-417m scaled down (F' = 2d)
    _tiny("mlp2-swa-mlp", "(F[hidden=128]-F-A-F)*6", {"A": _AT, "F": _FT}, base="mlp2-swa-mlp-417m"),
    # source: hybridlab, mamba-mlp-full11-449m scaled down
    _tiny("mamba-mlp-full11", "(M-F)*11-A[window=null]-F", _MAFT, base="mamba-mlp-full11-449m"),
    # source: hybridlab, mamba-mlp-full5-449m scaled down
    _tiny("mamba-mlp-full5", "(M-F)*5-A[window=null]-F-(M-F)*6", _MAFT, base="mamba-mlp-full5-449m"),
    # source: hybridlab, mamba-mlp-full0-449m scaled down
    _tiny("mamba-mlp-full0", "A[window=null]-F-(M-F)*11", _MAFT, base="mamba-mlp-full0-449m"),
    # source: hybridlab, mamba-mlp-full1-5-443m scaled down
    _tiny("mamba-mlp-full1-5", "M-F-A[window=null]-F-(M-F)*3-A[window=null]-F-(M-F)*6", _MAFT,
          base="mamba-mlp-full1-5-443m"),
    # source: hybridlab, llama2-swa-gqa2-419m scaled down (8 query heads / 2 KV heads)
    _tiny("llama2-swa-gqa2", "(A-F)*12", {"A": _swa(8, window=64, kv_heads=2), "F": _FT},
          base="llama2-swa-gqa2-419m", tie=False, note="8 query heads of 8 / 2 KV heads"),
    # source: hybridlab, llama2-swa-mqa6-419m scaled down (4 query heads of 16 / 1 KV head)
    _tiny("llama2-swa-mqa6", "(A-F)*12", {"A": _swa(4, window=64, kv_heads=1), "F": _FT},
          base="llama2-swa-mqa6-419m", tie=False, note="4 query heads of 16 / 1 KV head"),
    # source: hybridlab, llama2-swa-mqa-414m scaled down (8 query heads / 1 KV head)
    _tiny("llama2-swa-mqa", "(A-F)*12", {"A": _swa(8, window=64, kv_heads=1), "F": _FT},
          base="llama2-swa-mqa-414m", tie=False, note="8 query heads of 8 / 1 KV head"),
    # source: hybridlab, llama2-swa-gqa4-428m scaled down (8 query heads / 4 KV heads)
    _tiny("llama2-swa-gqa4", "(A-F)*12", {"A": _swa(8, window=64, kv_heads=4), "F": _FT},
          base="llama2-swa-gqa4-428m", tie=False, note="8 query heads of 8 / 4 KV heads"),
    # source: hybridlab, samba-gqa2-426m scaled down (8 query heads / 2 KV heads)
    _tiny("samba-gqa2", "(M-F-A-F)*6", {**_MAFT, "A": _swa(8, window=64, kv_heads=2)},
          base="samba-gqa2-426m", note="8 query heads of 8 / 2 KV heads"),
    # source: hybridlab, samba-mqa6-426m scaled down (4 query heads of 16 / 1 KV head)
    _tiny("samba-mqa6", "(M-F-A-F)*6", {**_MAFT, "A": _swa(4, window=64, kv_heads=1)},
          base="samba-mqa6-426m", note="4 query heads of 16 / 1 KV head"),
    # source: hybridlab, samba-mqa-424m scaled down (8 query heads / 1 KV head)
    _tiny("samba-mqa", "(M-F-A-F)*6", {**_MAFT, "A": _swa(8, window=64, kv_heads=1)},
          base="samba-mqa-424m", note="8 query heads of 8 / 1 KV head"),
    # source: hybridlab, samba-gqa4-431m scaled down (8 query heads / 4 KV heads)
    _tiny("samba-gqa4", "(M-F-A-F)*6", {**_MAFT, "A": _swa(8, window=64, kv_heads=4)},
          base="samba-gqa4-431m", note="8 query heads of 8 / 4 KV heads"),
)


def _index(table: tuple[Preset, ...]) -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    for preset in table:
        if preset.name in out:
            raise ValueError(f"presets: duplicate preset name {preset.name!r}")
        out[preset.name] = preset
    return out


PRESETS: dict[str, Preset] = _index(_TABLE)


def preset_names() -> list[str]:
    """All preset names in table order (paper presets first, then ``tiny-*``)."""
    return list(PRESETS)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (a copy: changing it leaves the table alone).

    Raises:
        ValueError: unknown name; the message lists the closest names and points to ``hybridlab presets``.
    """
    if isinstance(name, str) and name in PRESETS:
        return copy.deepcopy(PRESETS[name])
    key = _normalise(name) if isinstance(name, str) else str(name)
    by_normalised = {_normalise(n): n for n in PRESETS}
    matches = difflib.get_close_matches(key, list(by_normalised), n=3, cutoff=0.6)
    if key in by_normalised and key not in matches:
        matches.insert(0, key)
    hint = f" Did you mean {', '.join(repr(by_normalised[m]) for m in matches)}?" if matches else ""
    raise ValueError(
        f"unknown preset {name!r}.{hint} Run `hybridlab presets` to list all {len(PRESETS)} presets."
    )


def _model_dict(cfg: ModelConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out.pop("preset", None)
    return out


def _symbol(key: Any) -> Any:
    try:
        return registry.get(key).symbol
    except (registry.RegistryError, TypeError):
        return key


def _merge_mixers(base: Mapping[str, Any], user: Mapping[str, Any] | None) -> dict[str, Any]:
    merged = {_symbol(k): copy.deepcopy(v) for k, v in base.items()}
    if not user:
        return merged
    if not isinstance(user, Mapping):
        raise ConfigError(f"model.mixers must be a mapping of symbol -> fields; got {user!r}")
    seen: dict[Any, Any] = {}
    for key, fields in user.items():
        symbol = _symbol(key)
        if symbol in seen:
            raise ConfigError(
                f"model.mixers: {key!r} and {seen[symbol]!r} both configure mixer {symbol}; keep one of them"
            )
        seen[symbol] = key
        if fields is None:
            continue
        current = merged.get(symbol)
        if isinstance(fields, Mapping) and isinstance(current, Mapping):
            merged[symbol] = {**current, **copy.deepcopy(dict(fields))}
        else:
            merged[symbol] = copy.deepcopy(fields)
    return merged


def apply_preset(model_section: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve ``preset: NAME`` in a plain ``model:`` section.

    Returns a new dict: the preset's fields, then every other key of ``model_section`` on top.
    ``mixers`` merge per symbol and per field (``swa`` and ``A`` name the same entry; the result uses
    symbols); a mixer given as null keeps the preset's fields. The ``preset`` key is dropped. A
    section without a preset (or with ``preset: null``) comes back as a copy without that key.

    Raises:
        ValueError: unknown preset name.
        ConfigError: ``mixers`` is not a mapping, or two of its keys name the same mixer.
    """
    section = copy.deepcopy(dict(model_section))
    name = section.pop("preset", None)
    if name is None:
        return section
    merged = _model_dict(get_preset(name).model)
    user_mixers = section.pop("mixers", None)
    merged.update(section)
    merged["mixers"] = _merge_mixers(merged["mixers"], user_mixers)
    return merged


def presets_table(vocab_size: int | None = None) -> list[dict[str, Any]]:
    """One JSON-ready row per preset, the data of ``hybridlab presets [--json]``.

    ``params`` is exact (the real modules, built on the meta device by ``blocks.summary.describe``).
    ``vocab_size`` applies to presets whose vocabulary comes from the tokenizer (``tiny-*``); it
    defaults to ``TINY_VOCAB_SIZE``. Paper presets keep their 32000.

    Row keys: ``name``, ``architecture``, ``scale``, ``pattern`` (compact form), ``n_layers``,
    ``d_model``, ``vocab_size``, ``tie_embeddings``, ``init``, ``params``, ``non_embedding_params``
    (without the embedding and an untied LM head), ``paper_params``, ``paper_label``, ``deviation``
    (``params / paper_params - 1``, or None), ``source``.
    """
    from blocks.summary import describe

    rows = []
    for preset in PRESETS.values():
        cfg = preset.model
        info = describe(cfg, vocab_size=cfg.vocab_size or vocab_size or TINY_VOCAB_SIZE)
        embedding = info["embedding_params"] * (1 if cfg.tie_embeddings else 2)
        rows.append(
            {
                "name": preset.name,
                "architecture": preset.architecture,
                "scale": preset.scale,
                "pattern": info["compact"],
                "n_layers": info["n_layers"],
                "d_model": cfg.d_model,
                "vocab_size": info["vocab_size"],
                "tie_embeddings": cfg.tie_embeddings,
                "init": cfg.init,
                "params": info["params"],
                "non_embedding_params": info["params"] - embedding,
                "paper_params": preset.paper_params,
                "paper_label": preset.paper_label,
                "deviation": None if preset.paper_params is None else info["params"] / preset.paper_params - 1,
                "source": preset.source,
            }
        )
    return rows


def _human(n: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}"


def _percent(deviation: float | None) -> str:
    if deviation is None:
        return "-"
    percent = round(100 * deviation, 2)
    return "0.00%" if percent == 0 else f"{percent:+.2f}%"


def format_presets_table(rows: list[dict[str, Any]]) -> str:
    """The human-readable table of ``presets_table`` rows (one line each, pattern last)."""
    header = ("name", "params", "paper", "dev", "tied", "d", "layers", "pattern")
    lines = []
    for row in rows:
        paper = "-" if row.get("paper_params") is None else _human(row["paper_params"])
        if row.get("paper_label") and row["paper_label"] != paper:
            paper = f"{paper} ({row['paper_label']})"
        lines.append(
            (
                row["name"],
                _human(row["params"]),
                paper,
                _percent(row.get("deviation")),
                "yes" if row["tie_embeddings"] else "no",
                str(row["d_model"]),
                str(row.get("n_layers", "")),
                row["pattern"],
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    right = {1, 2, 3, 5, 6}

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [fmt(header), fmt(tuple("-" * w for w in widths))]
    out.extend(fmt(line) for line in lines)
    vocab = sorted({str(row["vocab_size"]) for row in rows if row.get("scale") == "tiny"})
    if vocab:
        out.append(f"\ntiny-* presets take the vocabulary from the tokenizer; counted here with {', '.join(vocab)}.")
    return "\n".join(out)
