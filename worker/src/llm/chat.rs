//! Chat prompts: a model's Jinja chat template rendered with minijinja the way Hugging Face
//! `transformers` renders it (`apply_chat_template`): `trim_blocks` and `lstrip_blocks` on, loop
//! controls, `raise_exception`, Python string methods such as `.strip()` and `.startswith()`
//! (minijinja-contrib's pycompat), and `messages`, `bos_token`, `eos_token`,
//! `add_generation_prompt` in the context. A model without a template gets ChatML.
//!
//! The rendered text already holds any BOS the template writes; tokenize it without adding
//! special tokens, and prepend BOS only when the tokenizer asks for it and the text lacks it
//! ([`ChatTemplate::needs_bos`]).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

use super::tokenizer::ChimeraTokenizer;

/// ChatML, the template of models that ship none (and of SmolLM2, Qwen).
pub const CHATML_TEMPLATE: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";

const TEMPLATE_NAME: &str = "chat";

/// Why a chat prompt could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template does not parse.
    #[error("chat template does not compile: {0:#}")]
    Compile(Error),
    /// Rendering failed, e.g. the template raised an exception on the messages given.
    #[error("chat template failed to render: {0:#}")]
    Render(Error),
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    /// Instructions for the whole conversation.
    System,
    /// The user's turn.
    User,
    /// The model's turn (an example answer, for few-shot prompts).
    Assistant,
}

impl ChatRole {
    /// The role's name in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who says it.
    pub role: ChatRole,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }

    fn to_value(&self) -> Value {
        Value::from_pairs([
            ("role", Value::from(self.role.as_str())),
            ("content", Value::from(self.content.as_str())),
        ])
    }
}

/// A compiled chat template with the special-token texts it may refer to. Compile once per
/// model, render per prompt (rendering is `&self`, so threads can share it).
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    is_chatml_fallback: bool,
}

impl ChatTemplate {
    /// Compiles `source`, or ChatML when `None`.
    pub fn new(
        source: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        // transformers compiles chat templates with trim_blocks and lstrip_blocks.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(ChatTemplateError::Compile)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        let is_chatml_fallback = source.is_none();
        env.add_template_owned(TEMPLATE_NAME, source.unwrap_or(CHATML_TEMPLATE).to_owned())
            .map_err(ChatTemplateError::Compile)?;
        Ok(Self {
            env,
            bos_token: bos_token.map(str::to_owned),
            eos_token: eos_token.map(str::to_owned),
            is_chatml_fallback,
        })
    }

    /// The tokenizer's template (ChatML when it has none) with its BOS/EOS texts.
    pub fn for_tokenizer(tok: &ChimeraTokenizer) -> Result<Self, ChatTemplateError> {
        Self::new(
            tok.chat_template.as_deref(),
            tok.bos_token.as_deref(),
            tok.eos_token.as_deref(),
        )
    }

    /// Whether this is the ChatML stand-in for a model that ships no template.
    pub fn is_chatml_fallback(&self) -> bool {
        self.is_chatml_fallback
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer begins.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(ChatTemplateError::Render)?;
        let messages: Vec<Value> = messages.iter().map(ChatMessage::to_value).collect();
        let token = |t: &Option<String>| t.as_deref().map_or(Value::UNDEFINED, Value::from);
        let ctx = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", token(&self.bos_token)),
            ("eos_token", token(&self.eos_token)),
        ]);
        template.render(ctx).map_err(ChatTemplateError::Render)
    }

    /// Whether a prompt rendered by this template still needs `tok.bos` in front: the tokenizer
    /// wants BOS and the text does not start with it already.
    pub fn needs_bos(&self, tok: &ChimeraTokenizer, rendered: &str) -> bool {
        tok.add_bos
            && tok.bos.is_some()
            && !tok
                .bos_token
                .as_deref()
                .is_some_and(|b| !b.is_empty() && rendered.starts_with(b))
    }
}

/// `raise_exception(msg)`, which HF templates call to reject a conversation.
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Renders `messages` with the tokenizer's template and a generation prompt (compiles the
/// template each call; keep a [`ChatTemplate`] to render many prompts).
pub fn render_chat(
    tok: &ChimeraTokenizer,
    messages: &[ChatMessage],
) -> Result<String, ChatTemplateError> {
    ChatTemplate::for_tokenizer(tok)?.render(messages, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_a_generation_prompt() {
        let t = ChatTemplate::new(None, None, None).expect("compile");
        assert!(t.is_chatml_fallback());
        let text = t
            .render(
                &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
                true,
            )
            .expect("render");
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n"
        );
        let no_prompt = t.render(&[ChatMessage::user("Hi")], false).expect("render");
        assert_eq!(no_prompt, "<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% for m in messages %}{% if m.role == 'tool' %}\
                   {{ raise_exception('no tools') }}{% endif %}\
                   [{{ m.content.strip() }}|{{ m.content.startswith(' a') }}]\
                   {% endfor %}";
        let t = ChatTemplate::new(Some(src), None, None).expect("compile");
        let text = t
            .render(&[ChatMessage::user(" a b  ")], false)
            .expect("render");
        // Booleans print as Python does, as in transformers.
        assert_eq!(text, "[a b|True]");
        let err = ChatTemplate::new(Some("{{ raise_exception('bad roles') }}"), None, None)
            .expect("compile")
            .render(&[], false)
            .expect_err("raises");
        assert!(err.to_string().contains("bad roles"), "{err}");
    }

    #[test]
    fn trim_and_lstrip_blocks_match_transformers() {
        let src = "{% for m in messages %}\n    {% if loop.first %}\n<first>\n    {% endif %}\n{{ m.content }}\n{% endfor %}";
        let t = ChatTemplate::new(Some(src), None, None).expect("compile");
        let text = t
            .render(&[ChatMessage::user("a"), ChatMessage::user("b")], false)
            .expect("render");
        assert_eq!(text, "<first>\na\nb\n");
    }

    #[test]
    fn syntax_errors_are_compile_errors() {
        let err = ChatTemplate::new(Some("{% for %}"), None, None).expect_err("bad syntax");
        assert!(matches!(err, ChatTemplateError::Compile(_)));
    }
}
