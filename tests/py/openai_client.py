"""The official openai client against `rocmforge serve`: completions and chat, streamed and
whole, at temperature 0 (the streamed text must equal the whole one). Usage:
openai_client.py BASE_URL (the server runs with --api-key k)."""

import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="k")

models = client.models.list()
model = models.data[0].id

whole = client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=12, temperature=0
)
text = whole.choices[0].text
assert "Paris" in text, text
assert whole.usage.completion_tokens == 12, whole.usage
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(
        model=model, prompt="The capital of France is", max_tokens=12, temperature=0, stream=True
    )
)
assert streamed == text, (streamed, text)

messages = [{"role": "user", "content": "Name a colour."}]
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
answer = chat.choices[0].message.content
assert chat.choices[0].message.role == "assistant"
assert answer, chat
parts = []
for c in client.chat.completions.create(
    model=model, messages=messages, max_tokens=16, temperature=0, stream=True
):
    if c.choices and c.choices[0].delta.content:
        parts.append(c.choices[0].delta.content)
assert "".join(parts) == answer, (parts, answer)

try:
    client.completions.create(model=model, prompt="x", max_tokens=10**6)
    raise SystemExit("max_tokens beyond the context was accepted")
except openai.BadRequestError as e:
    assert "max_tokens" in str(e), e

bad = openai.OpenAI(base_url=sys.argv[1], api_key="wrong")
try:
    bad.models.list()
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("openai client: ok")
