"""Model cards: render README.md from the templates in model_cards/ and read back the metrics they record."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from .errors import CheckpointError
from .textfiles import parse_yaml

if TYPE_CHECKING:
    from .prior import ImagePrior
    from .tokenizer import ImageTokenizer

CARD_NAME = "README.md"
CARD_INFO_KEY = "image_tokenizer"  # front-matter key holding {"metrics": {...}, "training": {...}}
MAX_FRONT_MATTER_BYTES = 64 * 2**10  # our cards' front matter is about 3 kB; a card's prose after it is never read


def template_text(name: str) -> str:
    return resources.files("image_tokenizer.model_cards").joinpath(f"{name}.md").read_text(encoding="utf-8")


def render_tokenizer_card(tokenizer: ImageTokenizer, model_name: str, card_info: dict[str, Any]) -> str:
    """Model card of an ImageTokenizer: vocabulary, usage, measured metrics and training record."""
    config = tokenizer.config
    grid_h, grid_w = config.grid_size
    k = config.quantizer.codebook_size
    layout = config.layout
    data = ModelCardData(
        library_name="image-tokenizer",
        tags=["image-tokenizer", "vqgan", "image-tokenization"],
        pipeline_tag="image-feature-extraction",
        **{CARD_INFO_KEY: card_info},
    )
    card = ModelCard.from_template(
        data,
        template_str=template_text("image_tokenizer"),
        model_name=model_name,
        repo_id=model_name,
        resolution=config.resolution,
        architecture=config.architecture,
        vit_legacy=bool(config.vit and config.vit.legacy),
        grid_h=grid_h,
        grid_w=grid_w,
        codebook_size=k,
        codebook_dim=config.quantizer.codebook_dim,
        l2_normalize=config.quantizer.normalization == "l2",
        quantizer=describe_quantizer(config.quantizer),
        special_tokens=", ".join(f"`{t}` = {tokenizer.convert_tokens_to_ids(t)}" for t in tokenizer.all_special_tokens),
        first_token=tokenizer.convert_ids_to_tokens(0),
        last_token=tokenizer.convert_ids_to_tokens(k - 1),
        layout_kind=layout.kind,
        layout=layout.describe(),
        ids_per_image=layout.ids_per_image,
        ids_shape=", ".join(map(str, layout.shape)),
        bits_per_image=f"{layout.ids_per_image * math.log2(k):.0f}" if k > 1 else "0",
        parameters=f"{sum(p.numel() for p in tokenizer.model.parameters()):,}",
        metrics=card_info.get("metrics", {}),
        training=card_info.get("training", {}),
        conversion=card_info.get("conversion", {}),
        intended_use=card_info.get("intended_use", ""),
    )
    return str(card)


def describe_quantizer(q: Any) -> str:
    """One line saying what the quantizer is and what an id means."""
    if q.kind == "fsq":
        return (f"FSQ, levels {list(q.levels)}: id = sum of digit_i * prod(levels[:i]), channel 0 the least-significant "
                "digit; code_i = (digit_i - L_i//2) / (L_i//2)")
    if q.kind == "lfq":
        lowest = "channel 0 the lowest bit" if q.bit_order == "lsb_first" else "channel 0 the highest bit"
        return f"LFQ, {q.bits} bits: bit_i = [z_i > 0], code_i = 2 bit_i - 1, id = the bits as a binary number, {lowest}"
    lookup = {"cosine": "nearest by cosine", "l2": "nearest by L2 distance", "dot": "largest dot product z . e"}
    if q.kind == "multiscale":
        phi = f"phi = (1 - {q.phi_ratio}) h + {q.phi_ratio} conv3x3(h), {q.phi_convs} shared convs" if q.phi_convs else "no phi"
        return (f"multi-scale residual VQ (VAR) over one learned codebook, {lookup[q.distance]}: scale k quantizes what "
                f"the coarser scales left, area-downsampled to its side; codes bicubic-upsampled, {phi}")
    if q.kind == "residual":
        return (f"residual VQ (RQ-VAE) over one learned codebook, {lookup[q.distance]}: {q.depth} codes per position, "
                "each quantizing what the earlier ones left; their vectors sum to the feature")
    return f"VQ over a learned codebook, {lookup[q.distance]}"


def load_card_info(directory: str | Path) -> dict[str, Any]:
    """The metrics/training record stored in a saved model's README front matter ({} when there is none, or when
    it cannot be read safely: a hand-edited or foreign README must never stop a model from loading)."""
    info = read_front_matter(Path(directory) / CARD_NAME).get(CARD_INFO_KEY, {})
    return info if isinstance(info, dict) else {}


def read_front_matter(path: Path) -> dict[str, Any]:
    """A README.md card's YAML front matter ({} when it has none we can read safely). Only the first
    MAX_FRONT_MATTER_BYTES are read, through textfiles' alias-free loader rather than ModelCard.load, whose
    yaml.safe_load expands aliases: a card of a few hundred bytes could cost minutes and gigabytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_FRONT_MATTER_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return {}
    match = REGEX_YAML_BLOCK.search(head)  # huggingface_hub's own rule for where front matter starts and ends
    if match is None:
        return {}
    try:
        data = parse_yaml(match.group(2), path, CheckpointError)
    except CheckpointError:
        return {}
    return data if isinstance(data, dict) else {}


def render_prior_card(prior: ImagePrior, model_name: str, card_info: dict[str, Any], load_name: str | None = None) -> str:
    """Model card of an ImagePrior: token layout, usage, measured metrics and training record. load_name: what
    the usage snippet passes to from_pretrained (default model_name: a bundled name or a Hub repo id)."""
    layout = prior.layout
    grid_h, grid_w = layout.grid_size
    if layout.conditional:
        classes = ", ".join(f"{i} = {name}" for i, name in enumerate(layout.class_names))
        column = f" (from `{layout.class_label_column}`)" if layout.class_label_column else ""
        conditioning = (
            f"{layout.num_classes} classes{column}: {classes}; class tokens {layout.first_class_token_id}.."
            f"{layout.null_class_token_id - 1}, null class {layout.null_class_token_id} (classifier-free guidance)"
        )
        sequence = "`<class>` `<boi>` then the image ids, row-major"
    else:
        conditioning, sequence = "none (unconditional)", "`<boi>` then the image ids, row-major"
    generates = f"a {grid_h}x{grid_w} grid of ids token by token"
    if layout.kind != "grid":
        sequence = sequence.replace("row-major", f"in the tokenizer's order: {layout.id_layout.describe()}")
        generates = f"{layout.num_image_tokens} ids token by token ({layout.kind} layout)"
    if layout.next_scale:
        sequence += (" (the targets); the inputs are `<boi>` over the first scale, then each scale's ids upsampled "
                     "(nearest) to the next scale's side, under a block-causal attention mask")
        generates = (f"the {len(layout.scales)} scales of a multiscale tokenizer ({layout.num_image_tokens} ids), one "
                     "forward pass per scale")
    if layout.maskgit:
        sequence += f", any of them replaced by `<mask>` = {layout.mask_token_id}"
        generates = (f"all {layout.num_image_tokens} ids in a few parallel steps (MaskGIT: from all `<mask>`, each step "
                     "keeps the most confident ids and masks the rest again)")
    data = ModelCardData(
        library_name="transformers",
        tags=["image-tokenizer", "image-generation", "maskgit" if layout.maskgit else "autoregressive", *(["class-conditional"] if layout.conditional else [])],
        # The Hub has no class-conditional task; a conditional prior is prompted by a class name, a short text.
        pipeline_tag="text-to-image" if layout.conditional else "unconditional-image-generation",
        **{CARD_INFO_KEY: card_info},
    )
    card = ModelCard.from_template(
        data,
        template_str=template_text("image_prior"),
        model_name=model_name,
        repo_id=load_name or model_name,
        architecture=type(prior.model).__name__,
        maskgit=layout.maskgit,
        lm_kind="bidirectional masked language model" if layout.maskgit else "causal language model",
        auto_class="AutoModelForMaskedLM" if layout.maskgit else "AutoModelForCausalLM",
        parameters=f"{sum(p.numel() for p in prior.model.parameters()):,}",
        tokenizer=layout.tokenizer,
        grid_h=grid_h,
        grid_w=grid_w,
        codebook_size=layout.codebook_size,
        boi=layout.boi_token_id,
        eoi=layout.eoi_token_id,
        pad=layout.pad_token_id,
        conditional=layout.conditional,
        generates=generates,
        completes=layout.kind == "grid" and not layout.maskgit,
        first_class=layout.class_names[0] if layout.conditional else "",
        class_list=", ".join(repr(name) for name in layout.class_names),
        conditioning=conditioning,
        sequence=sequence,
        metrics=card_info.get("metrics", {}),
        training=card_info.get("training", {}),
        sampling=prior.sampling_defaults.describe(),
    )
    return str(card)
