"""The model families table: every name it gives resolves to code, and the layer lists it records are the real ones."""

import pytest
import transformers as tf

from nlp_transfer.models import build, first_token
from nlp_transfer.models.families import FAMILIES, LAYER_PATHS, layer_paths

_TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
             max_position_embeddings=64)
_VISION = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def test_every_code_name_in_the_table_resolves():
    for name, family in FAMILIES.items():
        assert family.cls_head is None or family.cls_head in build._CLS_HEADS, name
        assert (family.first_token_layer is None) == (family.first_token_class is None), name
        assert family.first_token_layer is None or family.first_token_layer in first_token.LAYER_FORWARDS, name
        assert family.first_token_layer is None or family.layers, name  # where the first-token path finds the last layer


def test_a_family_the_table_does_not_list_is_looked_for_at_every_known_layout():
    assert layer_paths("not-a-family") == LAYER_PATHS
    assert layer_paths("distilbert")[0] == "transformer.layer" and set(layer_paths("distilbert")) == set(LAYER_PATHS)


@pytest.mark.parametrize("model", [
    lambda: tf.BertForSequenceClassification(tf.BertConfig(**_TEXT)),
    lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=2,
                                                                       hidden_dim=37)),
    lambda: tf.AlbertForSequenceClassification(tf.AlbertConfig(**_TEXT, embedding_size=16)),
    lambda: tf.ViTForImageClassification(tf.ViTConfig(**_VISION)),
    lambda: tf.ResNetForImageClassification(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])),
], ids=["bert", "distilbert", "albert", "vit", "resnet"])
def test_the_table_says_where_the_layers_are(model):
    model = model()
    path, _ = build.encoder_layers_at(model)
    assert path == f"{model.base_model_prefix}.{FAMILIES[model.config.model_type].layers}"
