# Input: "<file>,<amount>" lines. Writes "file,rows,total" per file and a final "ALL" line
# to the file named by -v out=..., and prints the overall total to stdout.
{
    if (!($1 in rows)) order[++files] = $1
    rows[$1]++
    total[$1] += $2
    all_rows++
    all_total += $2
}
END {
    print "file,rows,total" > out
    for (i = 1; i <= files; i++) printf "%s,%d,%.2f\n", order[i], rows[order[i]], total[order[i]] > out
    printf "ALL,%d,%.2f\n", all_rows, all_total > out
    close(out)
    printf "%d row(s) in %d file(s), total %.2f\n", all_rows, files, all_total
}
