"""Model card templates (Jinja, rendered through huggingface_hub.ModelCard); installed as image_tokenizer.model_cards."""
