_mkstream_completion() {
    local IFS=$'\n'
    local response
    local -a words
    local cword prefix=""

    if [[ -n ${COMP_LINE+set} ]]; then
        local line="${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}"
        IFS=$' \t' read -r -a words <<< "$line"
        [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
        cword=$(( ${#words[@]} - 1 ))
        local cur="${words[cword]}" fragment="${COMP_WORDS[COMP_CWORD]}"
        [[ $cur == *"$fragment" ]] && prefix="${cur%"$fragment"}"
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$cword _MKSTREAM_COMPLETE=bash_complete $1)

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

_mkstream_completion_setup() {
    complete -o nosort -F _mkstream_completion mkstream
}

_mkstream_completion_setup;
