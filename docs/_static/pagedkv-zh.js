// zh_CN messages of Sphinx 8's search page that Sphinx's own zh_CN catalog (sphinx.js) lacks.
// Loaded on zh_CN pages only, after translations.js (docs/_ext/pagedkv_search.py).
if (typeof Documentation !== "undefined" && Documentation.addTranslations) {
  Documentation.addTranslations({
    locale: "zh_Hans_CN",
    messages: {
      "Search finished, found one page matching the search query.": [
        "搜索完成，匹配到 ${resultCount} 页。",
      ],
      "Search Results": "搜索结果",
      "Searching": "正在搜索中",
      "Preparing search...": "正在准备搜索……",
      ", in ": "，在 ",
      "Hide Search Matches": "隐藏搜索结果",
      "Your search did not match any documents. Please make sure that all words are spelled correctly and that you've selected enough categories.":
        "没有找到匹配的页面。请检查关键词的拼写。",
    },
    plural_expr: "0",
  });
}
