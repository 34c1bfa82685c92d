"""Shell completion scripts, generated from the click definitions (``mkstream completion``)."""

from __future__ import annotations

import click


def completion_script(group: click.Command, shell: str) -> str:
    from click.shell_completion import get_completion_class

    register_bash_completion()
    cls = get_completion_class(shell)
    assert cls is not None
    return cls(group, {}, "mkstream", "_MKSTREAM_COMPLETE").source()

# click's bash script, with the words as the user typed them: bash splits the word being completed
# at COMP_WORDBREAKS (= and :), which KEY=VALUE params and NAME:ID channels contain, so the script
# splits COMP_LINE at blanks itself, hands click whole words, and gives bash back only the part
# after the last break character (what bash replaces). A completion ending in = gets no space.
BASH_TEMPLATE = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response
    local -a words
    local cword prefix=""

    if [[ -n ${COMP_LINE+set} ]]; then
        local line="${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}"
        IFS=$' \\t' read -r -a words <<< "$line"
        [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
        cword=$(( ${#words[@]} - 1 ))
        local cur="${words[cword]}" fragment="${COMP_WORDS[COMP_CWORD]}"
        [[ $cur == *"$fragment" ]] && prefix="${cur%%"$fragment"}"
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            [[ $value == *= ]] && compopt -o nospace
            COMPREPLY+=("${value#"$prefix"}")
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


def register_bash_completion() -> None:
    """Use the word-break-aware bash script for ``completion bash`` and ``_MKSTREAM_COMPLETE=bash_source``."""
    from click.shell_completion import BashComplete, add_completion_class

    class Bash(BashComplete):
        source_template = BASH_TEMPLATE

    add_completion_class(Bash, "bash")
