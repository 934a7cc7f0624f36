//! Chat templates: the real models' templates with arbitrary message text and roles, and
//! (a hostile file's template) arbitrary template text with fixed messages. Rendering
//! succeeds or fails with an error; it never panics or runs away.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rocmforge::tokenizer::ChatMessage;
use rocmforge_fuzz::vocabularies;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let model = &vocabularies()[usize::from(flags & 1)];
    let gen_prompt = flags & 2 != 0;
    if flags & 4 == 0 {
        // Messages separated by NUL; roles cycle, with one the templates do not know.
        let roles = ["system", "user", "assistant", "tool", "narrator"];
        let msgs: Vec<ChatMessage<'_>> = text
            .split('\0')
            .enumerate()
            .map(|(i, content)| ChatMessage {
                role: roles[(i + usize::from(flags >> 3)) % roles.len()],
                content,
            })
            .collect();
        let _ = model.apply_chat_template(None, &msgs, gen_prompt);
    } else {
        let msgs = [
            ChatMessage {
                role: "system",
                content: "Be brief.",
            },
            ChatMessage {
                role: "user",
                content: "Hi",
            },
        ];
        let _ = model.apply_chat_template(Some(&text), &msgs, gen_prompt);
    }
});
