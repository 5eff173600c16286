"""Greedy generation on the real model over an 8-device mesh (batch split over fsdp, as ``tulu-jax generate``
does on several devices) against one device, with the sampler refilling its slots on the mesh. It found a
defect: a row prefilled into a refilled slot could start from wrong logits (rows 5 and 15 here), from the
prefill's full [prompt, vocab] projection on 8 concurrent CPU devices; a prefill now projects only each row's
last token (see README, "Refills on a mesh"), and this test holds the result."""

import pytest

from tests.helpers.real_conversations import gsm8k_rows


@pytest.mark.slow
def test_greedy_tokens_on_an_8_device_mesh_equal_one_device(smollm2_dir):
    import jax

    from tulu_jax.generation.cli_options import inference_mesh_and_batch
    from tulu_jax.generation.loading import load_model_for_inference
    from tulu_jax.generation.prompts import encode_prompt
    from tulu_jax.generation.sampling import SamplingConfig
    from tulu_jax.generation.text import complete

    assert jax.device_count() == 8
    model = load_model_for_inference(smollm2_dir)
    prompts = [encode_prompt(model.tokenizer, [{"role": "user", "content": row["question"]}])
               for row in gsm8k_rows("test", 20, 100)]
    mesh, batch_size = inference_mesh_and_batch(20)
    greedy = SamplingConfig(temperature=0.0)
    texts = {}
    for name, on_mesh in (("one device", None), ("mesh", mesh)):
        completions = complete(model.params, model.config, model.tokenizer, prompts, sampling=greedy,
                               max_new_tokens=8, batch_size=batch_size, seed=0, mesh=on_mesh)
        texts[name] = [completion.text for completion in completions]
    assert texts["mesh"] == texts["one device"]
