"""The hub Space gallery: catalog, tiles, cards, leaderboard, sampling, the launched app's API, and a load test."""

import json
import shutil
import threading
import time

import pytest

from hubgen.gallery import Catalog, PipelineCache, build_gallery, leaderboard_rows
from hubgen.gallery.app import open_model, sample, tiles
from hubgen.gallery.catalog import bound_type, leaderboard_columns
from hubgen.registry import list_families

# Every registered family (the five built-in ones and the test plugin `pixels`), trained once per session with
# its declared smoke-test options (tests/conftest.py `tiny_models`).
FAMILIES = [f.name for f in list_families()]
MODELS = {f"{family}-digits" for family in FAMILIES}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("gallery") / "models"
    root.mkdir()
    for family in FAMILIES:
        shutil.copytree(tiny_models[family], root / f"{family}-digits", ignore=shutil.ignore_patterns("checkpoints"))
    broken = root / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    (root / "not-a-model").mkdir()  # a folder without model_index.json
    return root


@pytest.fixture(scope="module")
def catalog(models_dir):
    return Catalog(models_dir)


def test_catalog_reads_every_folder_and_marks_broken_ones(catalog):
    assert set(catalog.entries) == MODELS | {"broken-model", "not-a-model"}
    assert {catalog.get(m).family_name for m in MODELS} == set(FAMILIES)
    assert catalog.get("vae-digits").family_name == "vae" and catalog.get("gan-digits").family_name == "gan"
    assert catalog.get("vae-digits").dataset == "digits"
    assert "NoSuchPipeline" in catalog.get("broken-model").error
    assert "model_index.json" in catalog.get("not-a-model").error
    assert catalog.get("vae-digits").error is None and catalog.get("vae-digits").samples_path.endswith("samples.png")
    with pytest.raises(ValueError, match="Unknown model 'nope'"):
        catalog.get("nope")
    with pytest.raises(ValueError, match="needs a source"):
        Catalog(None, hub=False)


def test_filters_and_tiles(catalog):
    assert [e.model_id for e in catalog.filter("gan")] == ["gan-digits"]
    assert [e.model_id for e in catalog.filter(query="VAE")] == ["vae-digits"]
    assert catalog.filter(dataset="mnist") == []
    items, ids = tiles(catalog)
    assert ids == sorted(catalog.entries) and len(items) == len(MODELS) + 2
    captions = dict(zip(ids, (c for _, c in items), strict=True))
    assert "bits/dim (IWAE-" in captions["vae-digits"]  # headline: the likelihood with its bound
    assert "classifier FD" in captions["gan-digits"]  # a GAN has no likelihood
    assert "bits/dim (uniform dequantization bound, 1 draw)" in captions["flow-digits"]
    assert "prompt accuracy" in captions["text2img-digits"] and "guidance 3" in captions["text2img-digits"]
    assert captions["broken-model"].endswith("error")
    assert all(image.width == 192 for image, _ in items)


def test_bound_types_are_read_from_the_card_as_declared_not_parsed_from_labels(catalog):
    def bounds(model_id):
        return {r.metric_config: bound_type(r) for r in catalog.get(model_id).results if r.metric_args}

    k = json.loads((catalog.local_dir / "vae-digits" / "eval_results.json").read_text())["request"]["k"]
    assert bounds("vae-digits") == {"iwae_nll_nats": f"IWAE-{k}", "bits_per_dim": f"IWAE-{k}", "neg_elbo_nats": "ELBO"}
    assert set(bounds("flow-digits").values()) == {"uniform dequantization bound, 1 draw"}
    assert set(bounds("pixels-digits").values()) == {"exact"}
    t = json.loads((catalog.local_dir / "ddpm-digits" / "eval_results.json").read_text())["num_timesteps"]
    assert set(bounds("ddpm-digits").values()) == {f"variational bound ({t} timesteps)"}


def test_leaderboard_rows_match_the_cards(catalog):
    rows = {r[0]: r for r in leaderboard_rows(list(catalog.entries.values()))}
    assert set(rows) == MODELS  # broken folders have no row
    assert rows["flow-digits"][5] == "uniform dequantization bound, 1 draw"
    assert rows["vae-digits"][5].startswith("IWAE-")
    assert rows["ddpm-digits"][5].startswith("variational bound")
    t2i = json.loads((catalog.local_dir / "text2img-digits" / "eval_results.json").read_text())
    column = leaderboard_columns().index("prompt accuracy (training templates, guidance 3)")
    accuracy = t2i["metrics"]["prompt_accuracy_train_w3"]["mean"]
    assert rows["text2img-digits"][column] == pytest.approx(accuracy, abs=1e-3)
    vae_results = json.loads((catalog.local_dir / "vae-digits" / "eval_results.json").read_text())
    assert rows["vae-digits"][3] == pytest.approx(vae_results["metrics"]["bits_per_dim"]["mean"], abs=1e-3)
    assert rows["vae-digits"][4] == pytest.approx(vae_results["metrics"]["iwae_nll_nats"]["mean"], abs=0.01)
    gan_fd = json.loads((catalog.local_dir / "gan-digits" / "eval_results.json").read_text())
    assert rows["gan-digits"][6] == pytest.approx(gan_fd["sample_quality"]["frechet_distance"]["value"], abs=0.01)
    assert rows["gan-digits"][3] is None and "N=40" in rows["gan-digits"][7]
    assert rows["vae-digits"][column] is None and rows["pixels-digits"][5] == "exact"  # the plugin's row


def test_open_model_shows_card_and_metadata(catalog):
    text, table = open_model(catalog, "gan-digits")
    assert "Family **gan**" in text and "DCGAN" in text
    assert "](samples.png)" not in text and "](data:image/png;base64," in text  # images shown inside the app
    fields = dict(table)
    assert fields["library_name"] == "hubgen" and "frechet_distance (test)" in fields
    text, table = open_model(catalog, "broken-model")
    assert "cannot be shown" in text and table == []


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_every_card_image_is_inlined_and_the_page_keeps_one_h1(catalog, model_id):
    import re

    text, _ = open_model(catalog, model_id)
    card = (catalog.local_dir / model_id / "README.md").read_text()
    assert text.count("](data:image/") == card.count("![") > 0  # alt texts with brackets (E[x|z]) included
    assert not re.search(r"!\[.*\]\((?!data:)", text), "an image link left relative shows as a broken image"
    assert not re.search(r"^# ", text, flags=re.M), "the gallery's title is the page's only H1"


def test_sample_any_family_is_seeded_and_cache_is_bounded(catalog):
    cache = PipelineCache(max_loaded=1)
    a = sample(catalog, cache, "gan-digits", 3, 4)
    b = sample(catalog, cache, "gan-digits", 3, 4)
    assert a.tobytes() == b.tobytes() and cache.loads == 1
    sample(catalog, cache, "vae-digits", 0, 1)
    assert len(cache) == 1 and "vae-digits" in cache and "gan-digits" not in cache  # LRU eviction
    for bad, match in [(dict(num_images=0), "num_images"), (dict(num_images=65), "num_images"),
                       (dict(seed=-1), "seed"), (dict(steps=10**6), "steps")]:  # fmt: skip
        kwargs = dict(seed=0, num_images=1, prompt="", steps=1) | bad
        with pytest.raises(ValueError, match=match):
            sample(catalog, cache, "vae-digits", **kwargs)
    with pytest.raises(ValueError, match="cannot be loaded"):
        sample(catalog, cache, "broken-model", 0, 1)
    with pytest.raises(ValueError, match="Unknown model"):
        sample(catalog, cache, "missing", 0, 1)


def test_sample_every_family_and_text_needs_a_prompt(catalog):
    cache = PipelineCache(max_loaded=len(MODELS))
    for model_id in sorted(MODELS):
        prompt = "a handwritten seven" if model_id.startswith("text2img") else ""
        grid = sample(catalog, cache, model_id, 0, 4, prompt, 2)
        assert grid.width >= 64 and grid.width == grid.height
    with pytest.raises(ValueError, match="`prompt` must be a non-empty text"):
        sample(catalog, cache, "text2img-digits", 0, 1, "  ", 2)


@pytest.fixture(scope="module")
def launched(catalog):
    demo = build_gallery(catalog=catalog, concurrency_limit=2)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, ssr_mode=False)
    yield demo
    demo.close()


def test_client_lists_opens_samples_and_reads_the_leaderboard(launched):
    from gradio_client import Client

    client = Client(launched.local_url, verbose=False)
    rows = client.predict("All", "All", "", api_name="/list_models")
    assert {r[0] for r in rows} == MODELS | {"broken-model", "not-a-model"}
    card, meta = client.predict("vae-digits", api_name="/open_model")
    assert "variational autoencoder" in card and meta["data"]
    image_path = client.predict("gan-digits", 1, 4, "", 20, api_name="/sample")
    from PIL import Image

    assert Image.open(image_path).size[0] >= 64
    board = client.predict("All", api_name="/leaderboard")
    assert {r[0] for r in board["data"]} == MODELS
    # bad input: a message, and the app keeps serving
    for args in [("gan-digits", 1, 500, "", 20), ("missing-model", 0, 1, "", 20), ("", 0, 1, "", 20)]:
        with pytest.raises(Exception, match="maximum|not in the list of choices|Choose a model"):
            client.predict(*args, api_name="/sample")
    assert client.predict("gan-digits", 1, 1, "", 20, api_name="/sample")


def test_load_20_clients_200_requests_respect_the_concurrency_limit(launched, catalog):
    """20 concurrent clients, 200 sampling requests in all: no error, at most `concurrency_limit` run at once."""
    from gradio_client import Client

    from hubgen.gallery import app as gallery_app

    active, peak, lock = [0], [0], threading.Lock()
    original = gallery_app.sample

    def counting_sample(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.01)  # long enough for requests to overlap if the queue let them
            return original(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    gallery_app.sample = counting_sample
    latencies, errors = [], []
    try:

        def client_run(i):
            client = Client(launched.local_url, verbose=False)
            for j in range(10):
                start = time.perf_counter()
                try:
                    client.predict("gan-digits", i * 10 + j, 2, "", 20, api_name="/sample")
                except Exception as e:  # noqa: BLE001 (collected and asserted below)
                    errors.append(e)
                latencies.append(time.perf_counter() - start)

        threads = [threading.Thread(target=client_run, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gallery_app.sample = original
    assert errors == [] and len(latencies) == 200
    assert 1 <= peak[0] <= 2
    latencies.sort()
    print(f"gallery load test: 200 requests from 20 clients, p50 {latencies[99]:.3f} s, p95 {latencies[189]:.3f} s")


def test_concurrent_requests_for_the_same_image_all_get_it_whole(launched):
    """10 clients ask for the same samples at once (same model, seed and size: byte-identical outputs). gradio
    caches an output image object under a name made from its bytes and rewrote that one file in place while another
    request was reading it (truncated images, seen in the load test above when a model drew one image for every
    seed); the gallery hands gradio a file of its own per output instead. Every client gets the whole image."""
    from gradio_client import Client
    from PIL import Image

    images, errors = [], []

    def client_run():
        client = Client(launched.local_url, verbose=False)
        for _ in range(4):
            try:
                path = client.predict("gan-digits", 7, 4, "", 20, api_name="/sample")
                with Image.open(path) as image:
                    images.append(image.convert("RGB").tobytes())
            except Exception as e:  # noqa: BLE001 (collected and asserted below)
                errors.append(e)

    threads = [threading.Thread(target=client_run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(images) == 40 and len(set(images)) == 1


def test_blocks_build_with_the_family_demo_rendered(catalog):
    demo = build_gallery(catalog=catalog)
    api_names = {d.api_name for d in demo.fns.values() if d.api_name}
    assert {"tiles", "list_models", "open_model", "sample", "leaderboard"} <= api_names
    assert demo.catalog is catalog and isinstance(demo.cache, PipelineCache)


def test_leaderboard_tables_compare_only_like_with_like(catalog):
    from hubgen.gallery.catalog import leaderboard_tables

    tables = leaderboard_tables(list(catalog.entries.values()))
    seen = set()
    for title, headers, rows in tables:
        assert len(headers) <= 6 and all(len(row) == len(headers) for row in rows)  # narrow: fits 1280 px
        for row in rows:
            entry = catalog.get(row[0])
            if title.startswith("Likelihood"):
                encodings = {(r.metric_args or {}).get("data_encoding") for r in entry.results if r.metric_args
                             and (r.metric_args or {}).get("unit") in ("bits/dim", "nats/image")}  # fmt: skip
                assert len(encodings) == 1 and f"{entry.dataset}, {encodings.pop()} " in title, (title, row[0])
                seen.add(row[0])
            elif title.startswith("Sample quality"):
                fd = next(r for r in entry.results if r.metric_type == "frechet_distance")
                n = fd.metric_name.split("N=")[1].split(" ")[0]
                assert f"N = {n} " in title and row[2] == pytest.approx(fd.metric_value, abs=0.01)
    assert {"vae-digits", "flow-digits", "ddpm-digits"} <= seen
    flow = catalog.get("flow-digits").results
    assert {(r.metric_args or {}).get("data_encoding") for r in flow if r.metric_args} == {"17 levels"}
