//! Chat templates rendered as Hugging Face renders them: SmolLM2's own (from its GGUF), a
//! Qwen 3-style template (Python string methods, namespaces, reversed slices) and Llama 3's.

use chimera_worker::llm::chat::{ChatMessage, ChatTemplate, render_chat};
use chimera_worker::llm::tokenizer::load_tokenizer;

use super::constrain_fixture::tiny_tokenizer;
use super::smollm2_gguf;

/// Qwen 3's template without the tool branches (as shipped in its tokenizer_config.json).
const QWEN3_STYLE: &str = r#"{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"#;

/// Llama 3 Instruct's template, verbatim.
const LLAMA3: &str = r#"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>

'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>

' }}{% endif %}"#;

#[test]
fn qwen3_style_template_renders() {
    let t = ChatTemplate::new(Some(QWEN3_STYLE), None, Some("<|im_end|>")).expect("compile");
    let messages = [
        ChatMessage::system("S"),
        ChatMessage::user("Hi"),
        ChatMessage::assistant("<think>\nr\n</think>\n\nHello"),
        ChatMessage::user("Again"),
    ];
    let text = t.render(&messages, true).expect("render");
    assert_eq!(
        text,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn llama3_template_renders_with_bos() {
    let t = ChatTemplate::new(Some(LLAMA3), Some("<|begin_of_text|>"), Some("<|eot_id|>"))
        .expect("compile");
    let messages = [ChatMessage::system("  S  "), ChatMessage::user("Hi\n")];
    let text = t.render(&messages, true).expect("render");
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let without = t.render(&messages, false).expect("render");
    assert!(without.ends_with("Hi<|eot_id|>"), "{without}");

    // The template writes BOS itself, so the prompt needs no second one.
    let mut tok = tiny_tokenizer();
    tok.add_bos = true;
    tok.bos_token = Some("<|begin_of_text|>".into());
    assert!(!t.needs_bos(&tok, &text));
    assert!(t.needs_bos(&tok, "no bos here"));
}

#[test]
fn model_without_template_gets_chatml() {
    let tok = tiny_tokenizer();
    assert!(tok.chat_template.is_none());
    let text = render_chat(&tok, &[ChatMessage::user("Hi")]).expect("render");
    assert_eq!(
        text,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_template_from_gguf() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = load_tokenizer(&path).expect("SmolLM2 tokenizer");
    let t = ChatTemplate::for_tokenizer(&tok).expect("compile");
    assert!(!t.is_chatml_fallback());
    let text = t.render(&[ChatMessage::user("Hi")], true).expect("render");
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let with_system = t
        .render(
            &[ChatMessage::system("Be terse."), ChatMessage::user("Hi")],
            true,
        )
        .expect("render");
    assert_eq!(
        with_system,
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    let ids = tok
        .tokenizer
        .encode(with_system.as_str(), false)
        .expect("encode");
    assert_eq!(ids.get_ids()[0], 1, "<|im_start|> is one control token");
    assert!(!t.needs_bos(&tok, &with_system));
}
