"""The model card: metadata the Hub reads, and the content a reader needs, rendered from the folder."""

import http.server
import json
import threading

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results


def test_card_metadata_and_content(trained_vae_dir):
    card = ModelCard.load(trained_vae_dir / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "hubgen" and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "unconditional-image-generation"
    assert {"hubgen", "vae"} <= set(data["tags"])
    results = json.loads((trained_vae_dir / "eval_results.json").read_text())
    _, evals = model_index_to_eval_results(data["model-index"])
    by_type = {e.metric_type: e for e in evals}
    assert round(results["metrics"]["iwae_nll_nats"]["mean"], 4) == by_type["nll"].metric_value
    assert f"k={results['k']}" in by_type["nll"].metric_name and by_type["nll"].dataset_split == "test"
    text = card.text
    info = json.loads((trained_vae_dir / "hubgen_training.json").read_text())
    for needle in [
        "VAEPipeline.from_pretrained(",  # how to use it
        "dynamic binarization",  # pixel mode
        f"first **{results['num_images']}** images of the **test** split",  # N and split
        f"IWAE NLL, k = {results['k']}",
        info["command"],  # the exact command that reproduces the run
        f"{info['train_cpu_seconds']} CPU-s in the main process",  # CPU time beside wall time
        f"hubgen eval {trained_vae_dir} --split test --k {results['k']}",  # and the one that re-evaluates it
        "![Samples",
        "1312.6114",
        "1509.00519",
    ]:
        assert needle in text, needle
    quality = results["sample_quality"]
    fd = by_type["frechet_distance"]
    assert fd.metric_value == round(quality["frechet_distance"]["value"], 4)
    assert "not Inception FID" in fd.metric_name and quality["feature_network"]["sha256"][:12] in fd.metric_name
    for needle in [
        "### Sample quality",
        "FD-digits",
        quality["feature_network"]["id"],
        "These are not Inception",
        f"floor: {quality['frechet_distance']['floor_n']} training images",
        "nearest_neighbours.png",
    ]:
        assert needle in text, needle
    # The front matter is plain YAML that the Hub's parser accepts.
    front = (trained_vae_dir / "README.md").read_text().split("---")[1]
    assert yaml.safe_load(front)["model-index"][0]["results"]


class _Validator(http.server.BaseHTTPRequestHandler):
    """A loopback stand-in for the Hub's POST /api/validate-yaml, checking the documented model-card rules
    that hubgen's metadata touches: a YAML mapping, a known license id, string tags, a known pipeline tag,
    and model-index results with task, dataset and numeric metric values. 400 with the reason otherwise."""

    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        problem = _card_problem(body["content"])
        self.send_response(400 if problem else 200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write((problem or "").encode())

    def log_message(self, *args):
        pass


def _card_problem(content: str) -> str | None:
    meta = yaml.safe_load(content.split("---")[1])
    if not isinstance(meta, dict):
        return "front matter is not a mapping"
    if meta.get("license") not in {"apache-2.0", "mit", "cc-by-4.0", "openrail", "other"}:
        return f"license {meta.get('license')!r} is not a Hub license id"
    if not all(isinstance(t, str) for t in meta.get("tags", [])):
        return "tags must be strings"
    if meta.get("pipeline_tag") not in {"unconditional-image-generation", "text-to-image"}:
        return f"pipeline_tag {meta.get('pipeline_tag')!r} unknown"
    for entry in meta.get("model-index", []):
        for result in entry["results"]:
            if "type" not in result["task"] or not {"name", "type"} <= set(result["dataset"]):
                return "model-index result needs task.type, dataset.name and dataset.type"
            if not all(isinstance(m.get("value"), (int, float)) and m.get("type") for m in result["metrics"]):
                return "model-index metrics need a type and a numeric value"
    return None


def test_card_passes_validate_against_a_loopback_validator(trained_vae_dir, monkeypatch):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Validator)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        card = ModelCard.load(trained_vae_dir / "README.md")
        card.validate()
        assert _Validator.seen[-1]["content"] == str(card)
        card.data.license = "made-up-license"
        with pytest.raises(ValueError, match="not a Hub license id"):
            card.validate()
    finally:
        server.shutdown()


def test_the_datasets_entry_names_hub_data_and_never_a_local_path(tmp_path, monkeypatch):
    from hubgen.model_folder import hub_dataset_id

    assert hub_dataset_id("mnist") == "ylecun/mnist" and hub_dataset_id("../shared/data/mnist.npz") == "ylecun/mnist"
    assert hub_dataset_id("huggan/smithsonian_butterflies_subset") == "huggan/smithsonian_butterflies_subset"
    (tmp_path / "mine" / "photos").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert hub_dataset_id("mine/photos") is None  # a local folder that looks like "user/name" is not a Hub id
    assert hub_dataset_id("digits") is None
