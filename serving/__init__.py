"""Clients of the serving components: Triton (audio encoder) and Milvus (track vectors)."""
